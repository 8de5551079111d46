"""The command line: clear errors for bad input, eval of a finished run, and the comparison table."""

import csv
import importlib.util
import json
import subprocess
import sys

import pytest
import torch

from alwa_det import cli
from alwa_det.commands.options import config_from
from alwa_det.config import TrainConfig, make_config

from helpers.child import child_options
from helpers.harness import (COCO_CONTENT, error_line, folder_files, make_coco, make_voc, single_thread,  # noqa: F401
                             tiny_argv)


@pytest.mark.parametrize("argv, message", [
    (["train", "--iterations", "0"], "expected a positive integer"),
    (["train", "--lr", "-1"], "expected a number above 0"),
    (["train", "--lr", "nan"], "expected a finite number"),
    (["train", "--loss", "l3"], "invalid choice: 'l3'"),
    (["train", "--weighting", "alwa3"], "invalid choice"),
    (["compare", "--losses", "l1,huber"], "expected a comma-separated subset"),
    (["train", "--lr-steps", "5,x"], "expected comma-separated integers"),
    # A repeated loss or weighting would fill the table with copies of one cell, as if they were seeds.
    (["compare", "--losses", "l1,ciou,l1"], "l1 listed more than once"),
    (["compare", "--weightings", "fixed,fixed"], "fixed listed more than once"),
])
def test_bad_arguments_exit_with_a_message(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["train", "--dataset", "voc"], "the voc dataset needs --data-root"),
    (["train", "--amp"], "mixed precision is for CUDA"),
    (["train", "--interval", "1"], "at least 2 iterations per window"),
    (["train", "--min-level", "4", "--max-level", "3"], "min_level <= max_level"),
    (["train", "--iterations", "5", "--epochs", "1"], "not both"),
    (["train", "--lr-steps", "9,3"], "increasing"),
    (["train", "--dataset", "coco", "--data-root", "/nonexistent/coco"], "/nonexistent/coco: COCO data root not found"),
    (["eval", "--checkpoint", "/nonexistent/run"], "checkpoint /nonexistent/run not found"),
    (["train", "--device", "mps"], "device: expected cpu, cuda or cuda:N, got 'mps'"),
    (["train", "--seed", str(2**32)], "seed: expected below 2**32"),
    (["train", "--backbone", "resnet50"] if importlib.util.find_spec("torchvision") is None else ["train", "--amp"],
     "needs torchvision" if importlib.util.find_spec("torchvision") is None else "mixed precision"),
])
def test_bad_configuration_returns_2_with_a_message(tmp_path, capsys, argv, message):
    if argv[0] != "eval":
        argv = argv + ["--out", str(tmp_path / "run")]
    assert cli.main(argv) == 2
    assert message in error_line(capsys.readouterr().err)
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_every_kind_has_a_table_title():
    from alwa_ext.kinds import LOSS_KINDS

    from alwa_det.titles import LOSS_TITLES, WEIGHTING_TITLES
    from alwa_det.weighting import WEIGHTINGS

    assert list(LOSS_TITLES) == list(LOSS_KINDS)
    assert WEIGHTING_TITLES == {"fixed": "Fixed", "alwa1": "ALWA_1", "alwa2": "ALWA_2"} and set(WEIGHTINGS) == {
        "fixed", "alwa1", "alwa2"}


def test_config_rejects_unknown_and_wrong_values():
    with pytest.raises(ValueError, match="unknown configuration key"):
        TrainConfig.from_dict({"learning_rate": 0.1})
    with pytest.raises(ValueError, match="batch_size: expected a positive integer"):
        make_config({"batch_size": 0})
    with pytest.raises(ValueError, match="detector"):
        make_config({"detector": "yolo"})


def test_defaults_are_the_demo():
    config = make_config({})
    assert (config.detector, config.loss, config.weighting, config.dataset, config.device) == (
        "retinanet", "ciou", "alwa2", "synthetic", "cpu")
    assert config.out == "runs/demo"
    voc = make_config({"dataset": "voc", "data_root": "x", "detector": "faster_rcnn"})
    assert (voc.train_split, voc.eval_split, voc.min_level, voc.anchor_scale) == ("trainval", "test", 2, 8.0)


def test_train_then_eval_and_resume_conflicts(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--out", str(out), "--iterations", "2", "--image-size", "64", "--width", "8", "--fpn-channels", "16",
            "--head-convs", "1", "--batch-size", "2", "--synthetic-train-images", "8", "--synthetic-eval-images", "4",
            "--workers", "0", "--log-interval", "1", "--interval", "2"]
    assert cli.main(argv) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "map50" in printed
    assert cli.main(["eval", "--checkpoint", str(out), "--out", str(tmp_path / "eval")]) == 0
    evaluated = json.loads((tmp_path / "eval" / "eval_metrics.json").read_text())
    # The same weights on the same data give the same score.
    assert evaluated["map50"] == pytest.approx(json.loads((out / "metrics.json").read_text())["map50"])
    assert cli.main(["eval", "--checkpoint", str(out / "model_final.pt")]) == 0
    capsys.readouterr()
    assert cli.main(["train", "--resume", str(out), "--lr", "0.5", "--iterations", "3"]) == 2
    assert "differ from its config: lr" in capsys.readouterr().err
    # Repeating the saved values (tuples included) is no conflict; the run continues to 3.
    saved_steps = ",".join(str(s) for s in json.loads((out / "config.json").read_text())["lr_steps"])
    assert cli.main(["train", "--resume", str(out), "--lr-steps", saved_steps, "--image-size", "64", "--iterations", "3"]) == 0
    assert int((out / "log.csv").read_text().strip().splitlines()[-1].split(",")[0]) == 3


def test_compare_writes_the_table(tmp_path, monkeypatch):
    made = []

    def fake_train(config, resume=None, overwrite=False):
        assert resume is None
        made.append(config)
        # fixed: 0.50/0.52/0.54, alwa2 one point better per seed, by loss offset.
        base = {"l1": 0.50, "ciou": 0.60}[config.loss] + 0.02 * config.seed
        return {"map50": base + (0.01 if config.weighting == "alwa2" else 0.0)}

    monkeypatch.setattr("alwa_det.train.train", fake_train)
    out = tmp_path / "cmp"
    assert cli.main(["compare", "--losses", "l1,ciou", "--weightings", "fixed,alwa2", "--seeds", "3", "--out", str(out),
                     "--iterations", "7"]) == 0
    assert len(made) == 12 and {c.seed for c in made} == {0, 1, 2} and all(c.iterations == 7 for c in made)
    assert len({c.out for c in made}) == 12
    table = (out / "table.md").read_text()
    assert "| Loss | Fixed | ALWA_2 |" in table
    assert "| L1 | 52.0 ± 2.0 | 53.0 ± 2.0 (+1.0) |" in table
    assert "| CIoU | 62.0 ± 2.0 | 63.0 ± 2.0 (+1.0) |" in table
    with open(out / "table.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["loss"], r["weighting"]) for r in rows] == [("l1", "fixed"), ("l1", "alwa2"), ("ciou", "fixed"), ("ciou", "alwa2")]
    assert float(rows[1]["change_vs_fixed"]) == pytest.approx(1.0)


def test_epochs_become_iterations():
    config = config_from({"epochs": 3, "synthetic_train_images": 16, "batch_size": 4})
    assert config.iterations == 12 and config.lr_steps == (9, 10)


@pytest.mark.parametrize("dataset", ["voc", "coco"])
def test_train_and_eval_on_tiny_folders(tmp_path, capsys, dataset):
    if dataset == "voc":
        objects = {f"{i:06d}": [("dog", (5 + i, 6, 40, 50), False), ("cat", (40, 10, 78, 58), i == 1)] for i in range(4)}
        objects["000009"] = []  # an image without objects
        root = make_voc(tmp_path / "VOC2007", objects)
        make_voc(tmp_path / "VOC2007", {"000001": objects["000001"]}, split="test")
    else:
        root = make_coco(tmp_path / "coco", COCO_CONTENT, split="train2017")
        make_coco(tmp_path / "coco", COCO_CONTENT, split="val2017")
    out = tmp_path / "run"
    argv = ["train", "--dataset", dataset, "--data-root", root, "--out", str(out), "--iterations", "2", "--batch-size", "2",
            "--image-size", "64", "--width", "8", "--fpn-channels", "16", "--head-convs", "1", "--workers", "0",
            "--log-interval", "1", "--interval", "2", "--min-level", "3", "--max-level", "5"]
    assert cli.main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["map50"] <= 1.0
    config = json.loads((out / "config.json").read_text())
    assert config["eval_split"] == {"voc": "test", "coco": "val2017"}[dataset]
    assert cli.main(["eval", "--checkpoint", str(out)]) == 0


# Runs alwa-train's main() for each argv in a Python whose import system refuses the harness's
# extras, as after the README's plain `pip install --no-build-isolation -e .`.
PLAIN_INSTALL = r'''
import contextlib, io, json, sys

REFUSED = ("PIL", "matplotlib", "tqdm", "pycocotools", "faster_coco_eval", "torchvision")


class NotInstalled:
    """Wraps a finder so that the refused packages look absent (find_spec None, import fails)."""

    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in REFUSED:
            return None
        find = getattr(self.finder, "find_spec", None)
        return find(name, path, target) if find else None

    def __getattr__(self, name):
        return getattr(self.finder, name)


sys.meta_path[:] = [NotInstalled(finder) for finder in sys.meta_path]
try:
    import PIL  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("the finder did not refuse PIL")
from alwa_det.cli import main

results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as stop:
            code = stop.code
    results.append({"code": code, "out": out.getvalue(), "err": err.getvalue()})
print(json.dumps(results))
'''


def test_plain_install_gives_help_and_names_the_missing_extra(tmp_path):
    argvs = [["--help"], ["train", "--help"], ["train", "--iterations", "1", "--out", str(tmp_path / "run")],
             ["eval", "--checkpoint", str(tmp_path / "run")], ["compare", "--seeds", "1", "--out", str(tmp_path / "grid")]]
    done = subprocess.run([sys.executable, "-c", PLAIN_INSTALL, json.dumps(argvs)], capture_output=True, text=True,
                          timeout=300, **child_options(tmp_path))
    assert done.returncode == 0, done.stderr
    help_text, train_help, train, evaluate, compare = json.loads(done.stdout)
    assert help_text["code"] == 0 and "usage: alwa-train" in help_text["out"]
    assert train_help["code"] == 0 and "--iterations" in train_help["out"]
    for result in (train, evaluate, compare):
        assert result["code"] == 2
        lines = result["err"].strip().splitlines()
        assert len(lines) == 1 and "pip install 'alwa_ext[harness]'" in lines[0], result["err"]
    assert "pillow" in train["err"] and "tqdm" in train["err"] and "matplotlib" in train["err"]
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_any_fpn_width_trains(tmp_path):
    # Widths GroupNorm's usual groups do not divide: 1 (zero groups of four) and 9.
    for channels in (1, 9):
        assert cli.main(tiny_argv(tmp_path / f"fpn{channels}", fpn_channels=channels, iterations=1)) == 0


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    assert cli.main(tiny_argv(out, iterations=2)) == 0
    return out


def test_eval_of_a_damaged_model_final_is_a_one_line_error(finished_run, tmp_path, capsys):
    # A truncated model_final.pt: a one-line error, not a traceback.
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "config.json").write_bytes((finished_run / "config.json").read_bytes())
    weights = (finished_run / "model_final.pt").read_bytes()
    (copy / "model_final.pt").write_bytes(weights[: len(weights) // 2])
    assert cli.main(["eval", "--checkpoint", str(copy / "model_final.pt")]) == 2
    assert f"{copy / 'model_final.pt'} cannot be read" in error_line(capsys.readouterr().err)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_eval_on_cuda_without_cuda_is_a_one_line_error(finished_run, capsys):
    # Not torch's AssertionError (Torch not compiled with CUDA enabled).
    assert cli.main(["eval", "--checkpoint", str(finished_run), "--device", "cuda"]) == 2
    assert "'cuda' requested but CUDA is not available" in error_line(capsys.readouterr().err)


def _tiny_compare(out):
    return ["compare", "--losses", "l1", "--weightings", "fixed", "--seeds", "1", "--out", str(out), "--iterations", "2",
            "--image-size", "64", "--width", "8", "--fpn-channels", "16", "--head-convs", "1", "--batch-size", "2",
            "--synthetic-train-images", "8", "--synthetic-eval-images", "4", "--log-interval", "1", "--interval", "2"]


def test_compare_without_evaluation_is_refused_before_training(tmp_path, capsys):
    # Refused before its first cell trains, saying why (not pointing at pycocotools).
    assert cli.main(_tiny_compare(tmp_path / "grid") + ["--no-eval"]) == 2
    assert "--no-eval leaves nothing to compare" in error_line(capsys.readouterr().err)
    assert not (tmp_path / "grid").exists()


def test_compare_reuses_finishes_or_refuses_its_cells(tmp_path, capsys):
    out = tmp_path / "grid"
    argv = _tiny_compare(out)
    assert cli.main(argv) == 0
    cell = out / "retinanet-l1-fixed-seed0"
    files = folder_files(cell)
    assert cli.main(argv) == 0  # a finished cell is reused as it is
    assert folder_files(cell) == files
    # A truncated metrics.json: the cell is evaluated again from its final checkpoint, with a warning
    # naming the file.
    (cell / "metrics.json").write_text('{"map50": 0.')
    capsys.readouterr()
    assert cli.main(argv) == 0
    assert f"{cell / 'metrics.json'}: cannot be read" in capsys.readouterr().err
    untimed = lambda metrics: {k: v for k, v in metrics.items() if not k.endswith("_seconds")}  # noqa: E731
    assert untimed(json.loads((cell / "metrics.json").read_text())) == untimed(json.loads(files["metrics.json"]))
    assert (cell / "log.csv").read_bytes() == files["log.csv"]  # evaluated, not trained again
    # A cell of another configuration is not overwritten unless asked to.
    assert cli.main(argv + ["--lr", "0.02"]) == 2
    assert "holds a run of another configuration (it differs in lr)" in error_line(capsys.readouterr().err)
    assert cli.main(argv + ["--lr", "0.02", "--overwrite"]) == 0
    assert json.loads((cell / "metrics.json").read_text())["config"]["lr"] == 0.02
