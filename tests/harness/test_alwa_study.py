"""What the study needs of the harness: the detrended ALWA statistic as an option (off by default;
the statistic itself is tested with alwa_ext.ALWA in tests/test_alwa.py), the side-by-side demo,
configs saved before an option existed, and the study's grid."""

import csv
import json
import os
import sys

import pytest
import torch

import alwa_ext
from alwa_det import cli
from alwa_det.checkpoint import resume_conflicts
from alwa_det.commands.options import config_from, explicit_training_values
from alwa_det.config import TrainConfig, make_config
from alwa_det.data import build_dataset, collate
from alwa_det.weighting import FixedWeighting, make_weighting

from helpers.harness import single_thread, tiny_argv, tiny_config  # noqa: F401

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_the_statistic_is_an_option_with_the_paper_as_default(tmp_path):
    assert TrainConfig().alwa_statistic == "raw" and make_config({}).alwa_statistic == "raw"
    assert isinstance(make_weighting("alwa2", 1.0, 1.0, 50), alwa_ext.ALWA)
    detrended = make_weighting("alwa2", 1.0, 1.0, 50, "paper", "detrended")
    assert isinstance(detrended, alwa_ext.ALWA) and detrended.statistic == "detrended"
    assert isinstance(make_weighting("fixed", 1.0, 1.0, 50, "paper", "detrended"), FixedWeighting)
    with pytest.raises(ValueError, match="alwa_statistic"):
        make_config({"alwa_statistic": "median"})
    args = cli.build_parser().parse_args(["train", "--alwa-statistic", "detrended"])
    assert config_from(explicit_training_values(args)).alwa_statistic == "detrended"


def test_a_config_saved_before_an_option_existed_matches_at_its_default():
    saved = TrainConfig().to_dict()
    del saved["alwa_statistic"]  # as in a checkpoint from before the option
    assert resume_conflicts(saved, TrainConfig().to_dict()) == []
    assert resume_conflicts(saved, {**TrainConfig().to_dict(), "alwa_statistic": "detrended"}) == ["alwa_statistic"]


def test_training_step_with_the_detrended_statistic_makes_no_host_sync(tmp_path, monkeypatch):
    from alwa_det.distributed import Process
    from alwa_det.loop import build_training, training_step
    from alwa_det.run_log import LogWindow

    config = tiny_config(tmp_path, weighting="alwa2", alwa_statistic="detrended", interval=3)
    training = build_training(config, Process(), torch.device("cpu"))
    assert isinstance(training.weighting, alwa_ext.ALWA) and training.weighting.statistic == "detrended"
    dataset = build_dataset("synthetic", "train", config.image_size, None, 0, 4)
    batch = collate([dataset[i] for i in range(2)])
    window = LogWindow()

    def refuse(*args, **kwargs):
        raise AssertionError("host sync in the training step")

    for name in ("item", "tolist", "numpy", "__bool__", "__int__", "__float__", "__index__", "cpu", "nonzero"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    for _ in range(4):  # crosses an update (interval 3)
        window.add(training_step(training, batch))
    monkeypatch.undo()
    assert int(training.weighting.num_updates) == 1 and float(training.weighting.weights[0]) != 1.0


def test_demo_trains_fixed_and_alwa_side_by_side(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo"] + tiny_argv(out, no_eval=False, iterations=6, interval=3)[1:]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    metrics = {w: json.loads((out / w / "metrics.json").read_text()) for w in ("fixed", "alwa2")}
    assert metrics["fixed"]["config"]["weighting"] == "fixed" and metrics["alwa2"]["config"]["weighting"] == "alwa2"
    # The same data, seed and schedule: only the weighting differs.
    differing = {k for k in metrics["fixed"]["config"] if metrics["fixed"]["config"][k] != metrics["alwa2"]["config"][k]}
    assert differing == {"weighting", "out"}
    fixed_line = next(line for line in printed.splitlines() if line.startswith("Fixed 1:1"))
    alwa_line = next(line for line in printed.splitlines() if line.startswith("ALWA_2 (paper rule, C = 3)"))
    assert f"{100 * metrics['fixed']['map50']:.1f}%" in fixed_line and fixed_line.split()[-2] == "1.000"
    assert f"{100 * metrics['alwa2']['map50']:.1f}%" in alwa_line
    assert alwa_line.split()[-2] == f"{metrics['alwa2']['lambda_cls']:.3f}" != "1.000"
    assert "C = 50 iterations (the paper and its code: 100)" in printed  # the preset's departures
    for path in (out / "fixed" / "losses.png", out / "alwa2" / "losses.png", out / "comparison.png", out / "summary.txt"):
        assert path.stat().st_size > 0
    assert (out / "summary.txt").read_text() == printed
    # The two runs trained at the same time (one process each: threads 1, two cores) give what
    # a run alone gives.
    alone = tmp_path / "alone"
    train_argv = tiny_argv(alone, no_eval=False, iterations=6, interval=3) + ["--weighting", "fixed"]
    assert cli.main(train_argv) == 0
    capsys.readouterr()
    read_log = lambda folder: [{k: v for k, v in row.items() if k != "seconds"}  # noqa: E731
                               for row in csv.DictReader(open(folder / "log.csv"))]
    assert read_log(out / "fixed") == read_log(alone)
    assert json.loads((alone / "metrics.json").read_text())["map50"] == metrics["fixed"]["map50"]
    # Again: both finished runs are reused, nothing is trained.
    before = (out / "fixed" / "log.csv").stat().st_mtime_ns
    assert cli.main(argv) == 0
    assert (out / "fixed" / "log.csv").stat().st_mtime_ns == before
    assert capsys.readouterr().out == printed


def test_the_study_grid_has_three_seeds_per_cell_and_one_name_per_config():
    sys.path.insert(0, os.path.join(REPO, "docs", "experiments"))
    try:
        import run_study
    finally:
        sys.path.pop(0)
    cells = run_study.grid(run_study.PARTS, [])
    names = [c["name"] for c in cells]
    assert len(names) == len(set(names))
    configs = {json.dumps(c["values"], sort_keys=True) for c in cells}
    assert len(configs) == len(cells)  # no two configurations under one name, nor one under two
    groups = {}
    for c in cells:
        key = json.dumps({k: v for k, v in c["values"].items() if k != "seed"}, sort_keys=True)
        groups.setdefault(key, set()).add(c["values"]["seed"])
    assert all(seeds == set(run_study.SEEDS) for seeds in groups.values()) and len(run_study.SEEDS) >= 3
    # Every stage's cells are cells of the study, and together they are all of them.
    staged = {c["name"] for part, losses, weightings in run_study.STAGES
              for c in run_study.grid([part], [], losses, weightings)}
    assert staged == set(names)
    for c in cells:  # each cell is a valid harness configuration
        config = run_study.cell_config(c["name"], c["values"], "runs")
        assert (config.backbone_weights is not None) == (c["values"]["init"] == "pretrained") == ("-pretrained-" in c["name"])
