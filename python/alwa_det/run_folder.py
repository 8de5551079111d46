"""A run folder: the files a run writes, how a run claims its folder, and writes that a crash or a
full disk cannot leave half done.

A run holds a lock on ``.lock`` in its folder while it is live (an advisory ``flock``, which the
kernel drops when the process ends, however it ends), so a second run into the same folder is
refused rather than interleaved with it. A fresh run needs an empty folder, or ``overwrite``,
which removes the files of the run that was there; a resumed run continues in the folder it
names. Everything that replaces a file is written beside it and renamed over it.
"""
from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
from typing import Callable, Dict, List, Optional

try:
    import fcntl
except ImportError:  # not POSIX: runs are not locked
    fcntl = None

CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"
FINAL_WEIGHTS = "model_final.pt"
CONFIG_FILE = "config.json"
LOG_FILE = "log.csv"
METRICS_FILE = "metrics.json"
EVAL_METRICS_FILE = "eval_metrics.json"
LOSS_PLOT = "losses.png"
DETECTIONS_PLOT = "detections.png"
BACKBONE_WEIGHTS = "backbone.pt"  # what a pretraining run (alwa_det.pretrain) is for
LOCK_FILE = ".lock"
# What a run writes at the top of its folder; --overwrite removes these and the checkpoints.
RUN_FILES = (CONFIG_FILE, LOG_FILE, METRICS_FILE, EVAL_METRICS_FILE, FINAL_WEIGHTS, LOSS_PLOT, DETECTIONS_PLOT,
             BACKBONE_WEIGHTS)


class RunFolderError(ValueError):
    """A run folder that cannot be used, or a file in it that cannot be read or written; names the path."""


def temporary_name(path: str) -> str:
    return f"{path}.tmp-{os.getpid()}"


def os_error_in(error: Optional[BaseException]) -> Optional[OSError]:
    """The OSError behind ``error`` (itself, or what it was raised from or while handling)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def describe(error: BaseException) -> str:
    """A one-line reason: the OS's (e.g. 'No space left on device') where there is one."""
    os_error = os_error_in(error)
    if os_error is not None and os_error.strerror:
        return os_error.strerror
    return str(error).splitlines()[0] if str(error) else type(error).__name__


class _WholeWrites:
    """A file for ``torch.save`` whose every write is complete or raises the OS's error (torch's own
    file writer reports a short write as an unexplained 'unexpected pos')."""

    def __init__(self, raw):
        self.raw = raw

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        while view:
            view = view[self.raw.write(view):]
        return len(data)

    def flush(self) -> None:
        pass  # unbuffered: every write has reached the OS


def write_atomically(path: str, write: Callable[[object], None]) -> None:
    """``write(file)`` into a temporary beside ``path``, synced, then renamed over ``path``.

    A crash leaves either the old file or the new one; a failed write (a full disk) removes the
    temporary and raises a RunFolderError naming ``path`` and the reason.
    """
    temporary = temporary_name(path)
    try:
        with open(temporary, "wb", buffering=0) as handle:
            write(_WholeWrites(handle))
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        if isinstance(error, Exception):
            raise RunFolderError(f"{path}: cannot write ({describe(error)})") from error
        raise


def save_atomically(payload: object, path: str) -> None:
    """``torch.save`` through :func:`write_atomically`: a crash never leaves half a checkpoint."""
    import torch

    write_atomically(path, lambda handle: torch.save(payload, handle))


def write_json_atomically(payload: object, path: str) -> None:
    write_atomically(path, lambda handle: handle.write((json.dumps(payload, indent=2) + "\n").encode()))


def read_json(path: str) -> Dict[str, object]:
    """A JSON object from ``path``; a damaged file is a RunFolderError naming it."""
    try:
        with open(path) as handle:
            content = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunFolderError(f"{path}: cannot be read ({describe(error)})") from error
    if not isinstance(content, dict):
        raise RunFolderError(f"{path}: expected a JSON object")
    return content


def run_folder_of(resume: str) -> str:
    """The run folder that ``--resume`` names: the folder itself, or the one around its checkpoints/."""
    if os.path.isdir(resume):
        return resume
    if os.path.isfile(resume):
        folder = os.path.dirname(os.path.abspath(resume))
        if os.path.basename(folder) == CHECKPOINT_DIR:
            return os.path.dirname(folder)
        raise RunFolderError(f"--resume {resume}: a checkpoint outside a run folder; give the run folder "
                             f"(the one that holds {CHECKPOINT_DIR}/{LAST_CHECKPOINT})")
    raise RunFolderError(f"--resume {resume}: no such run folder or checkpoint")


def same_folder(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


class RunFolder:
    """The folder of one run, claimed by :meth:`claim` and given back by :meth:`release`."""

    def __init__(self, path: str):
        if not isinstance(path, str) or not path.strip():
            raise RunFolderError(f"out: expected a run folder, got {path!r}")
        self.path = path
        self._lock = None

    def file(self, *names: str) -> str:
        return os.path.join(self.path, *names)

    @property
    def checkpoint(self) -> str:
        return self.file(CHECKPOINT_DIR, LAST_CHECKPOINT)

    def claim(self, fresh: bool, overwrite: bool = False) -> None:
        """Create and lock the folder. A fresh run needs it empty, or ``overwrite`` (which removes
        the previous run's files); a resumed one needs its checkpoint. Stale temporaries go."""
        try:
            os.makedirs(self.file(CHECKPOINT_DIR), exist_ok=True)
        except OSError as error:
            raise RunFolderError(f"{self.path}: cannot create the run folder ({describe(error)})") from error
        self._acquire_lock()
        try:
            if fresh:
                left = self.contents()
                if left and not overwrite:
                    what = "--resume it to continue" if os.path.isfile(self.checkpoint) else "it has no checkpoint to resume"
                    shown = ", ".join(left[:4]) + (", ..." if len(left) > 4 else "")
                    raise RunFolderError(f"{self.path} holds another run ({shown}); {what}, pass --overwrite to replace it, "
                                         "or choose another --out")
                if overwrite:
                    self._remove_previous_run()
            elif not os.path.isfile(self.checkpoint):
                raise RunFolderError(f"{self.checkpoint}: no checkpoint to resume from")
            self._remove_stale_temporaries()
        except BaseException:
            self.release()
            raise

    def contents(self) -> List[str]:
        """What the folder holds besides the lock and an empty checkpoints/ folder."""
        names = sorted(set(os.listdir(self.path)) - {LOCK_FILE})
        checkpoints = self.file(CHECKPOINT_DIR)
        if CHECKPOINT_DIR in names and os.path.isdir(checkpoints) and not os.listdir(checkpoints):
            names.remove(CHECKPOINT_DIR)
        return names

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the descriptor drops the flock
            self._lock = None

    def _acquire_lock(self) -> None:
        path = self.file(LOCK_FILE)
        try:
            handle = open(path, "a+")
        except OSError as error:
            raise RunFolderError(f"{self.path}: cannot write in the run folder ({describe(error)})") from error
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                handle.close()
                if error.errno in (errno.EAGAIN, errno.EACCES):
                    raise RunFolderError(f"{self.path}: the run folder is in use by a live run (pid {holder})") from None
                raise RunFolderError(f"{self.path}: cannot lock the run folder ({describe(error)})") from error
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._lock = handle

    def _remove_previous_run(self) -> None:
        """The files a run writes, and its checkpoints; anything else in the folder stays."""
        for name in RUN_FILES:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.file(name))
        for path in glob.glob(self.file(CHECKPOINT_DIR, "*")):
            if os.path.isfile(path):
                os.remove(path)

    def _remove_stale_temporaries(self) -> None:
        """Temporaries of writes that a killed run never finished (the lock says no run is live)."""
        for name in RUN_FILES + (os.path.join(CHECKPOINT_DIR, LAST_CHECKPOINT),):
            for path in glob.glob(glob.escape(self.file(name)) + ".tmp-*"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
