"""A run folder is the run: resume stays in the folder it names, no run overwrites another or is
shortened, a live run holds its folder, and folders that cannot be used are one-line errors."""

import errno
import json
import os
import shutil
import subprocess
import sys
import threading

import pytest

from alwa_det import cli
from alwa_det import loop
from alwa_det.checkpoint import load_checkpoint
from alwa_det.train import train

from helpers.harness import error_line, folder_files, log_iterations, single_thread, tiny_argv, tiny_config  # noqa: F401
from helpers.child import child_options


def test_resume_continues_the_folder_it_names_not_the_one_in_its_checkpoint(tmp_path):
    # B, a copy of A, records out=A; resuming B must not rewind A nor delete its log rows.
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli.main(tiny_argv(a)) == 0
    shutil.copytree(a, b)
    assert cli.main(["train", "--resume", str(a), "--iterations", "8"]) == 0
    a_files = folder_files(a)
    assert cli.main(["train", "--resume", str(b), "--iterations", "6"]) == 0
    assert folder_files(a) == a_files
    assert load_checkpoint(str(b))["iteration"] == 6 and log_iterations(b) == [2, 4, 6]
    assert json.loads((b / "config.json").read_text())["out"] == str(b)
    # A checkpoint file names its run folder too.
    assert cli.main(["train", "--resume", str(b / "checkpoints" / "last.pt"), "--iterations", "8"]) == 0
    assert log_iterations(b) == [2, 4, 6, 8] and folder_files(a) == a_files


def test_resume_of_a_relative_out_is_the_folder_named_now(tmp_path, monkeypatch):
    (tmp_path / "first").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "first")
    assert cli.main(tiny_argv("run")) == 0
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert cli.main(["train", "--resume", str(tmp_path / "first" / "run"), "--iterations", "6"]) == 0
    assert os.listdir(tmp_path / "elsewhere") == []
    assert log_iterations(tmp_path / "first" / "run") == [2, 4, 6]


def test_resume_into_another_out_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(tiny_argv(run)) == 0
    capsys.readouterr()
    assert cli.main(["train", "--resume", str(run), "--out", str(tmp_path / "other"), "--iterations", "6"]) == 2
    assert "names another folder" in error_line(capsys.readouterr().err)
    assert not (tmp_path / "other").exists()


def test_resume_cannot_shorten_a_run_and_a_finished_one_is_left_alone(tmp_path, capsys):
    # --iterations 30 on a 60-iteration checkpoint would write metrics saying 30 beside the 60-iteration model.
    run = tmp_path / "run"
    assert cli.main(tiny_argv(run, iterations=6)) == 0
    files = folder_files(run)
    capsys.readouterr()
    assert cli.main(["train", "--resume", str(run), "--iterations", "4"]) == 2
    assert "a run cannot be shortened" in error_line(capsys.readouterr().err)
    assert folder_files(run) == files
    assert cli.main(["train", "--resume", str(run)]) == 0
    assert "finished at iteration 6; nothing to train" in capsys.readouterr().err
    assert folder_files(run) == files


def test_a_second_run_into_a_run_folder_needs_overwrite(tmp_path, capsys):
    # A second run into the folder would truncate the log, replace the checkpoint and keep the old metrics.json.
    run = tmp_path / "run"
    assert cli.main(tiny_argv(run, no_eval=False)) == 0
    assert (run / "detections.png").is_file()
    files = folder_files(run)
    capsys.readouterr()
    assert cli.main(tiny_argv(run, iterations=2)) == 2
    message = error_line(capsys.readouterr().err)
    assert "holds another run" in message and "--resume" in message and "--overwrite" in message
    assert folder_files(run) == files
    assert cli.main(tiny_argv(run, iterations=2, resume=str(run), overwrite=True)) == 2
    assert "not both" in error_line(capsys.readouterr().err)
    (run / "notes.txt").write_text("mine")
    assert cli.main(tiny_argv(run, iterations=2, overwrite=True)) == 0
    # Nothing of the old run is left to contradict the new one; what is not a run file stays.
    assert not (run / "detections.png").exists()
    assert json.loads((run / "metrics.json").read_text())["iterations"] == 2
    assert log_iterations(run) == [2] and load_checkpoint(str(run))["iteration"] == 2
    assert (run / "notes.txt").read_text() == "mine"


def test_a_live_run_holds_its_folder(tmp_path, monkeypatch, capsys):
    # Two runs started at once in one folder would interleave their logs.
    run = tmp_path / "run"
    live, second_tried = threading.Event(), threading.Event()
    step = loop.training_step
    steps = []

    def held_step(training, batch):
        steps.append(batch)
        if len(steps) == 3:  # past the first checkpoint (iteration 2), so a resume finds one
            live.set()
            assert second_tried.wait(60)
        return step(training, batch)

    monkeypatch.setattr(loop, "training_step", held_step)
    failures = []
    first = threading.Thread(target=lambda: failures.extend(_failure_of(train, tiny_config(run, evaluate=False))))
    first.start()
    try:
        assert live.wait(60)
        codes = [cli.main(tiny_argv(run, overwrite=True)), cli.main(["train", "--resume", str(run)])]
        errors = capsys.readouterr().err
    finally:
        second_tried.set()
        first.join()
    assert failures == []
    assert codes == [2, 2] and errors.count(f"in use by a live run (pid {os.getpid()})") == 2
    assert log_iterations(run) == [2, 4]  # the first run's log alone


def _failure_of(function, *args):
    try:
        function(*args)
    except Exception as error:  # noqa: BLE001  (reported by the test)
        return [error]
    return []


def test_temporaries_of_killed_writes_are_removed(tmp_path):
    # last.pt.tmp-PID files left by a killed write are cleaned up by the next run in the folder.
    run = tmp_path / "run"
    assert cli.main(tiny_argv(run)) == 0
    stale = [run / "checkpoints" / "last.pt.tmp-999999", run / "metrics.json.tmp-999998"]
    for path in stale:
        path.write_bytes(b"half a file")
    assert cli.main(["train", "--resume", str(run), "--iterations", "6"]) == 0
    assert not any(path.exists() for path in stale)
    assert sorted(os.listdir(run / "checkpoints")) == ["last.pt"]


@pytest.mark.parametrize("case", ["empty", "file", "read_only"])
def test_an_unusable_out_is_a_one_line_error(tmp_path, monkeypatch, capsys, case):
    # A file or a read-only --out: one-line errors, not tracebacks; --out "" must not write into the current folder.
    monkeypatch.chdir(tmp_path)
    out = {"empty": "", "file": "taken", "read_only": "run"}[case]
    if case == "file":
        (tmp_path / "taken").write_text("a file")
    if case == "read_only":
        def read_only(path, *args, **kwargs):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)

        monkeypatch.setattr(os, "makedirs", read_only)
    assert cli.main(tiny_argv(out)) == 2
    message = error_line(capsys.readouterr().err)
    expected = {"empty": "out: expected a run folder, got ''", "file": "taken: cannot create the run folder",
                "read_only": "Read-only file system"}[case]
    assert expected in message
    assert sorted(os.listdir(tmp_path)) == ([] if case != "file" else ["taken"])


def _log_lines(run):
    return (run / "log.csv").read_text().splitlines(keepends=True)


def test_a_garbled_log_row_is_left_out_with_a_warning_and_the_old_log_kept(tmp_path, capsys):
    # A damaged log must neither stop the resume half way (dict contains fields not in fieldnames:
    # None) nor lose the rows that can be read.
    run = tmp_path / "run"
    assert cli.main(tiny_argv(run, iterations=6)) == 0
    lines = _log_lines(run)
    lines[2] = lines[2].rstrip("\n") + ",1.5,extra\n"  # the row of iteration 4
    garbled = "".join(lines)
    (run / "log.csv").write_text(garbled)
    capsys.readouterr()
    assert cli.main(["train", "--resume", str(run), "--iterations", "8"]) == 0
    err = capsys.readouterr().err
    assert f"{run / 'log.csv'}: line(s) 3 cannot be read" in err and "log.csv.damaged" in err
    assert log_iterations(run) == [2, 6, 8]
    assert (run / "log.csv.damaged").read_text() == garbled
    assert (run / "losses.png").is_file()


def test_a_log_cut_short_is_rebuilt_from_what_can_be_read(tmp_path, capsys):
    # A last row cut short must not let training finish, then exit 2 (could not convert string to float: '').
    run = tmp_path / "run"
    assert cli.main(tiny_argv(run, iterations=6)) == 0
    text = (run / "log.csv").read_text()
    (run / "log.csv").write_text(text[: len(text) - len(_log_lines(run)[-1]) // 2])
    assert cli.main(["train", "--resume", str(run), "--iterations", "8"]) == 0
    assert "line(s) 4 cannot be read" in capsys.readouterr().err
    assert log_iterations(run) == [2, 4, 8]
    assert json.loads((run / "metrics.json").read_text())["iterations"] == 8


def test_a_failed_resume_leaves_the_log_as_it_was(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(tiny_argv(run, iterations=6, checkpoint_interval=4)) == 0
    checkpoint = run / "checkpoints" / "last.pt"
    whole = checkpoint.read_bytes()
    log = (run / "log.csv").read_bytes()
    for damaged in (whole[: len(whole) // 2], b""):
        checkpoint.write_bytes(damaged)
        capsys.readouterr()
        assert cli.main(["train", "--resume", str(run), "--iterations", "8", "--log-interval", "3"]) == 2
        assert f"{checkpoint}" in error_line(capsys.readouterr().err)
        assert (run / "log.csv").read_bytes() == log


FULL_DISK = r"""
import resource, signal, sys
from alwa_det.cli import main

# Files may grow to 64 KiB: config.json and log.csv fit, a checkpoint does not. Past the limit a
# write fails (EFBIG) as it would on a full disk (ENOSPC), instead of the process being killed.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
sys.exit(main(sys.argv[1:]))
"""


def test_a_full_disk_is_a_one_line_error_and_leaves_no_temporary(tmp_path):
    # A full disk: a one-line error, and no .tmp file left filling it.
    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-c", FULL_DISK, *tiny_argv(run)], capture_output=True, text=True, timeout=300,
                          **child_options(tmp_path))
    assert done.returncode == 2, done.stderr
    message = error_line(done.stderr)
    assert f"{run / 'checkpoints' / 'last.pt'}: cannot write (File too large)" in message
    assert os.listdir(run / "checkpoints") == []
    assert not [name for name in os.listdir(run) if ".tmp-" in name]
