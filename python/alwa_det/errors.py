"""The ways training stops short that the command line reports in one line (no heavy imports, so
the CLI can catch them before anything else is loaded)."""


class TrainingDiverged(ValueError):
    """The loss or the weights became non-finite (exit status 2, like bad data or options)."""


class TrainingInterrupted(Exception):
    """Ctrl-C stopped training between two steps (exit status 130)."""
