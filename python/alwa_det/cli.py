"""Command line: ``alwa-train train | eval | compare | demo | pretrain`` (also ``python -m alwa_det``).

``train`` with no options is the demo's ALWA run (RetinaNet, CIoU, ALWA_2, synthetic data, CPU);
``demo`` trains it beside fixed weights on the same data and prints both. Options the user gives
override the preset of the chosen dataset and detector (see :mod:`alwa_det.config`). Each command
is a module of :mod:`alwa_det.commands`.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

from .commands import compare, demo, eval as evaluate, pretrain, train
from .errors import TrainingInterrupted

# What the commands import beyond alwa_ext's own dependencies (torch, numpy), module -> package:
# a plain `pip install alwa_ext` has none of them, `alwa_ext[harness]` brings them. --help needs none.
HARNESS_EXTRAS = {"PIL": "pillow", "tqdm": "tqdm", "matplotlib": "matplotlib"}

COMMANDS = {"train": train, "eval": evaluate, "compare": compare, "demo": demo, "pretrain": pretrain}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alwa-train", description=__doc__.splitlines()[0])
    subcommands = parser.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        command.add_arguments(subcommands.add_parser(name, help=command.HELP))
    return parser


def require_extras(command: str) -> None:
    """Raise a one-line error naming what ``command`` needs and the pip install that brings it."""
    missing = []
    for module, package in HARNESS_EXTRAS.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(package)
    if missing:
        raise ValueError(f"{command} needs {', '.join(missing)}, not installed here: pip install 'alwa_ext[harness]'")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        require_extras(args.command)
        return COMMANDS[args.command].run(args)
    except (ValueError, OSError) as error:  # bad configuration, data or files: a message, not a traceback
        print(f"alwa-train {args.command}: error: {error}", file=sys.stderr)
        return 2
    except TrainingInterrupted as error:  # Ctrl-C while training: stopped between two steps
        print(f"alwa-train {args.command}: {error}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:  # Ctrl-C during setup or evaluation
        print(f"alwa-train {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
