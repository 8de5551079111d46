"""The run's log: the step values summed on the device between log points (:class:`LogWindow`,
read once per log point), and log.csv, one row per logged iteration, appended by the main process.

A resumed run keeps the rows up to its checkpoint and drops the later ones (it trains those
iterations again). The file is rebuilt beside the old one and renamed over it, and only once the
resume has worked; a line that cannot be read (garbled, cut short by a power loss or a full
disk) is left out with a warning naming it, and the original file is kept beside the log.
"""
from __future__ import annotations

import csv
import io
import math
import os
import shutil
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist

from .run_folder import RunFolderError, describe, write_atomically

# The columns around the loss columns, which depend on the detector.
LEADING_COLUMNS = ("iteration", "logged_iterations")
TRAILING_COLUMNS = ("loss_cls_std", "loss_reg_std", "lambda_cls", "lambda_reg", "lr", "seconds")
INTEGER_COLUMNS = frozenset(LEADING_COLUMNS)


def log_columns(loss_columns: Sequence[str]) -> List[str]:
    return [*LEADING_COLUMNS, *loss_columns, *TRAILING_COLUMNS]


def _csv_line(values: Sequence[object]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()


def _parse_row(fields: List[str], columns: Sequence[str]) -> Dict[str, float]:
    """A row of numbers, or ValueError; integer columns must hold integers."""
    if len(fields) != len(columns):
        raise ValueError(f"{len(fields)} fields, expected {len(columns)}")
    row: Dict[str, float] = {}
    for column, text in zip(columns, fields):
        value = float(text)
        if column in INTEGER_COLUMNS:
            if not math.isfinite(value) or value != int(value) or value < 1:
                raise ValueError(f"{column} {text!r} is not a positive integer")
            value = int(value)
        row[column] = value
    return row


def read_log(path: str, columns: Sequence[str] = ()) -> Tuple[List[str], List[Dict[str, float]], List[int]]:
    """(columns, rows, numbers of the lines that cannot be read) of a log.csv.

    With ``columns``, the header must be exactly those; a line must have a number in every column,
    an iteration above the previous row's, and its newline (a last line without one was cut short).
    """
    try:
        with open(path, newline="") as handle:
            lines = handle.read().split("\n")
    except (OSError, UnicodeDecodeError) as error:
        raise RunFolderError(f"{path}: cannot be read ({describe(error)})") from error
    ended = lines[-1] == ""
    if ended:
        lines.pop()
    numbered = list(enumerate(lines, start=1))
    if not numbered:
        return list(columns), [], []
    header = next(csv.reader([numbered[0][1]]))
    if (columns and header != list(columns)) or "iteration" not in header or not (len(numbered) > 1 or ended):
        return list(columns), [], [number for number, _ in numbered]
    rows, unreadable = [], []
    for number, line in numbered[1:]:
        try:
            if number == len(lines) and not ended:
                raise ValueError("cut short")
            row = _parse_row(next(csv.reader([line]), []), header)
            if rows and row["iteration"] <= rows[-1]["iteration"]:
                raise ValueError("iteration out of order")
        except (ValueError, csv.Error):
            unreadable.append(number)
            continue
        rows.append(row)
    return header, rows, unreadable


def _free_name(path: str) -> str:
    candidate, number = path, 1
    while os.path.exists(candidate):
        number += 1
        candidate = f"{path}.{number}"
    return candidate


class RunLog:
    """The log of a run; build it with :meth:`fresh` or :meth:`resumed`."""

    def __init__(self, path: str, columns: Sequence[str]):
        self.path = path
        self.columns = list(columns)

    @classmethod
    def fresh(cls, path: str, columns: Sequence[str]) -> "RunLog":
        log = cls(path, columns)
        log._write_rows([])
        return log

    @classmethod
    def resumed(cls, path: str, columns: Sequence[str], iteration: int) -> "RunLog":
        """The log up to ``iteration``, rebuilt from what can be read of the old one."""
        log = cls(path, columns)
        if not os.path.isfile(path):
            print(f"warning: {path} not found; the resumed log starts after iteration {iteration}", file=sys.stderr)
            log._write_rows([])
            return log
        _, rows, unreadable = read_log(path, columns)
        if unreadable:
            kept = _free_name(f"{path}.damaged")
            shutil.copyfile(path, kept)
            shown = ", ".join(str(n) for n in unreadable[:10]) + (", ..." if len(unreadable) > 10 else "")
            print(f"warning: {path}: line(s) {shown} cannot be read and are left out of the resumed log; "
                  f"the old file is kept as {kept}", file=sys.stderr)
        log._write_rows([row for row in rows if row["iteration"] <= iteration])
        return log

    def _write_rows(self, rows: List[Dict[str, float]]) -> None:
        text = _csv_line(self.columns) + "".join(_csv_line([row[c] for c in self.columns]) for row in rows)
        write_atomically(self.path, lambda handle: handle.write(text.encode()))

    def append(self, row: Dict[str, float]) -> None:
        line = _csv_line([row[column] for column in self.columns])
        try:
            with open(self.path, "a", newline="") as handle:
                handle.write(line)
        except OSError as error:
            raise RunFolderError(f"{self.path}: cannot write ({describe(error)})") from error


class LogWindow:
    """The step values since the last log point, summed on the device; read once, at the log point."""

    def __init__(self):
        self.sums: Optional[torch.Tensor] = None
        self.count = 0

    def add(self, values: torch.Tensor) -> None:
        self.sums = values if self.sums is None else self.sums + values
        self.count += 1

    def state_dict(self) -> Dict[str, object]:
        """For a checkpoint between log points: the resumed run's next row then covers the same
        iterations, with the same sums, as an uninterrupted run's."""
        return {"count": self.count, "sums": None if self.sums is None else self.sums.cpu()}

    def load_state_dict(self, state: Dict[str, object], device: torch.device) -> None:
        self.count = int(state["count"])
        self.sums = None if state["sums"] is None else state["sums"].to(device)

    def row(self, training, names: List[str], iteration: int, seconds: float) -> Dict[str, float]:
        """The log row of the window ending at ``iteration`` (means over all ranks), and a fresh window;
        ``training`` (an :class:`alwa_det.loop.Training`) gives the process, λ and the lr."""
        means = self.sums / self.count
        if training.process.distributed:
            dist.all_reduce(means)
            means /= training.process.world_size
        *mean_values, cls_square, reg_square, _ = means.tolist()
        row = {"iteration": iteration, "logged_iterations": self.count, **dict(zip(names, mean_values))}
        # Spread of the per-iteration raw losses over the interval (all ranks' when distributed).
        row["loss_cls_std"] = max(cls_square - row["loss_cls"] ** 2, 0.0) ** 0.5
        row["loss_reg_std"] = max(reg_square - row["loss_reg"] ** 2, 0.0) ** 0.5
        lambda_cls, lambda_reg = training.weighting.weights.float().tolist()
        row.update(lambda_cls=lambda_cls, lambda_reg=lambda_reg, lr=training.optimizer.param_groups[0]["lr"],
                   seconds=seconds)
        self.sums, self.count = None, 0
        return row
