"""The commands of ``alwa-train``, one module each: its help line (``HELP``), its options
(``add_arguments``) and what it does (``run``, which returns the exit status). :mod:`alwa_det.cli`
puts them under one parser."""
