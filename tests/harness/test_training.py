"""Smoke training of each detector with each weighting, exact resume, no host sync in the step,
and a two-process gloo run."""

import csv
import json
import math
import os

import pytest
import torch

from alwa_det.data import build_dataset, collate
from alwa_det.models import build_detector
from alwa_det.checkpoint import load_checkpoint
from alwa_det.errors import TrainingDiverged, TrainingInterrupted
from alwa_det.train import train
from alwa_det.weighting import make_weighting
from helpers.distributed import leave_group, run_ranks
from helpers.harness import single_thread, tiny_config  # noqa: F401  (single_thread: an autouse fixture)


def _read_log(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("detector", ["retinanet", "faster_rcnn"])
@pytest.mark.parametrize("weighting", ["fixed", "alwa1", "alwa2"])
def test_smoke_training_writes_a_complete_run(tmp_path, detector, weighting):
    loss = {"fixed": "smooth_l1", "alwa1": "giou", "alwa2": "ciou"}[weighting]
    config = tiny_config(tmp_path / "run", detector=detector, weighting=weighting, loss=loss, cls_weight=0.7,
                         evaluate=(weighting == "alwa2"))
    torch.manual_seed(0)
    initial = build_detector(config, 3).state_dict()
    metrics = train(config)
    run = tmp_path / "run"
    rows = _read_log(run / "log.csv")
    assert [int(r["iteration"]) for r in rows] == [2, 4]
    assert [int(r["logged_iterations"]) for r in rows] == [2, 2]
    for row in rows:
        for key in ("loss_cls", "loss_reg", "loss_cls_std", "loss_reg_std", "weighted_cls", "weighted_reg", "lambda_cls",
                    "lambda_reg", "lr", "seconds"):
            assert math.isfinite(float(row[key])), key
    if detector == "faster_rcnn":
        assert "loss_roi_cls" in rows[0] and "loss_roi_reg" in rows[0]
    if weighting == "fixed":
        assert all(float(r["lambda_cls"]) == pytest.approx(0.7) for r in rows)
        assert float(rows[0]["weighted_cls"]) == pytest.approx(0.7 * float(rows[0]["loss_cls"]), rel=1e-5)
    final = torch.load(run / "model_final.pt")
    assert any(not torch.equal(final[k], initial[k]) for k in initial if initial[k].is_floating_point())
    checkpoint = load_checkpoint(str(run))
    assert checkpoint["iteration"] == 4 and "weighting" in checkpoint and "rng" in checkpoint
    assert (run / "losses.png").stat().st_size > 0 and (run / "config.json").is_file()
    saved = json.loads((run / "metrics.json").read_text())
    if weighting == "alwa2":
        assert {"map50", "map50_11pt"} <= set(saved) and 0.0 <= saved["map50"] <= 1.0
        assert (run / "detections.png").stat().st_size > 0
    assert saved["lambda_cls"] == pytest.approx(float(rows[-1]["lambda_cls"]))


def test_alwa_changes_lambda_cls_by_the_paper_rule(tmp_path):
    # Windows of 2 iterations: with std_cls > std_reg at the first update, lambda_cls = std_reg / std_cls.
    weighting = make_weighting("alwa2", 1.0, 1.0, interval=2)
    weighting(torch.tensor(1.0), torch.tensor(0.5))
    weighting(torch.tensor(3.0), torch.tensor(0.7))
    # stds (ddof 1): cls sqrt(2), reg 0.2 * sqrt(0.5) -> lambda_cls = 0.1.
    assert float(weighting.weights[0]) == pytest.approx(0.1, rel=1e-5)
    assert float(weighting.weights[1]) == 1.0
    w_cls, w_reg = weighting(torch.tensor(2.0, requires_grad=True), torch.tensor(1.0))
    assert float(w_cls.detach()) == pytest.approx(0.2, rel=1e-5)


def test_resume_continues_exactly(tmp_path):
    common = dict(detector="retinanet", weighting="alwa2", loss="ciou", interval=4, log_interval=5,
                  checkpoint_interval=10, lr_steps=(25,), warmup_iterations=5, evaluate=False, synthetic_train_images=24)
    straight = tiny_config(tmp_path / "straight", iterations=30, **common)
    train(straight)
    first_part = tiny_config(tmp_path / "resumed", iterations=20, **common)
    train(first_part)
    second_part = tiny_config(tmp_path / "resumed", iterations=30, **common)
    train(second_part, resume=str(tmp_path / "resumed"))
    a = torch.load(tmp_path / "straight" / "model_final.pt")
    b = torch.load(tmp_path / "resumed" / "model_final.pt")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    straight_rows = _read_log(tmp_path / "straight" / "log.csv")
    resumed_rows = _read_log(tmp_path / "resumed" / "log.csv")
    drop_time = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop_time(straight_rows) == drop_time(resumed_rows)
    wa = load_checkpoint(str(tmp_path / "straight"))["weighting"]
    wb = load_checkpoint(str(tmp_path / "resumed"))["weighting"]
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) if torch.is_tensor(wa[k]) else wa[k] == wb[k] for k in wa)


class HostSync(AssertionError):
    pass


@pytest.mark.parametrize("detector", ["retinanet", "faster_rcnn"])
def test_training_step_makes_no_host_sync(tmp_path, monkeypatch, detector):
    """Every way Python reads a tensor's value is made to fail during the harness's own steps."""
    from alwa_det.distributed import Process
    from alwa_det.loop import build_training, training_step
    from alwa_det.run_log import LogWindow

    config = tiny_config(tmp_path, detector=detector, weighting="alwa2", interval=2)
    training = build_training(config, Process(), torch.device("cpu"))
    dataset = build_dataset("synthetic", "train", config.image_size, None, 0, 4)
    batch = collate([dataset[i] for i in range(2)] + [dataset[0]])
    batch.gt_valid[2] = False  # an image without objects in the batch
    window = LogWindow()

    def refuse(*args, **kwargs):
        raise HostSync("host sync in the training step")

    for name in ("item", "tolist", "numpy", "__bool__", "__int__", "__float__", "__index__", "cpu"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    original_nonzero = torch.Tensor.nonzero
    monkeypatch.setattr(torch.Tensor, "nonzero", refuse)
    monkeypatch.setattr(torch, "nonzero", refuse)
    for _ in range(3):  # crosses an ALWA update (interval 2)
        window.add(training_step(training, batch))
    monkeypatch.undo()
    assert window.count == 3 and torch.isfinite(window.sums).all()
    assert original_nonzero is torch.Tensor.nonzero


def _distributed_worker(rank, world_size, rendezvous, folder):
    # As under torchrun, the rank comes from the environment and train() joins the group itself, and
    # leaves it before returning; only the rendezvous is a file (no port to race for), not env://.
    import torch.distributed as dist

    from alwa_det import loop
    from alwa_det.train import train
    from helpers.distributed import TIMEOUT

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    join = dist.init_process_group
    dist.init_process_group = lambda backend: join(backend, init_method=f"file://{rendezvous}", rank=rank,
                                                   world_size=world_size, timeout=TIMEOUT)
    config = tiny_config(os.path.join(folder, "run"), weighting="alwa2", interval=2, iterations=4, evaluate=False)
    captured = {}
    original_build = loop.build_detector

    def keep_model(*args, **kwargs):
        captured["model"] = original_build(*args, **kwargs)
        return captured["model"]

    loop.build_detector = keep_model
    original_weighting = loop.make_weighting

    def keep_weighting(*args, **kwargs):
        captured["weighting"] = original_weighting(*args, **kwargs)
        return captured["weighting"]

    loop.make_weighting = keep_weighting
    try:
        train(config)
        left = not dist.is_initialized()
        torch.save({"model": captured["model"].state_dict(), "weights": captured["weighting"].weights, "left": left},
                   os.path.join(folder, f"rank{rank}.pt"))
    finally:
        leave_group()  # only if train() did not


def test_two_process_gloo_training(tmp_path):
    folder = str(tmp_path / "ddp")
    run_ranks(_distributed_worker, 2, folder, folder)
    out = os.path.join(folder, "run")  # beside the rendezvous file: a run folder holds only the run
    rank0 = torch.load(os.path.join(folder, "rank0.pt"))
    rank1 = torch.load(os.path.join(folder, "rank1.pt"))
    # DDP keeps parameters identical across ranks, and ALWA's weights are synchronised.
    for key, value in rank0["model"].items():
        if value.is_floating_point() and "running" not in key:
            assert torch.equal(value, rank1["model"][key]), key
    assert torch.equal(rank0["weights"], rank1["weights"])
    assert rank0["left"] and rank1["left"]  # train() left the group it joined, after a barrier
    rows = _read_log(os.path.join(out, "log.csv"))
    assert [int(r["iteration"]) for r in rows] == [2, 4]  # one log, by rank 0
    assert load_checkpoint(out)["iteration"] == 4 and len(load_checkpoint(out)["rng"]) == 2


def test_window_statistics_pool_log_rows_exactly():
    import numpy as np

    from alwa_det.plots import window_statistics

    rng = np.random.default_rng(0)
    per_iteration = rng.normal(1.0, 0.3, size=47)
    # Log rows every 5 iterations (the last one partial), windows of 20 iterations.
    ends = list(range(5, 47, 5)) + [47]
    starts = [0] + ends[:-1]
    rows = [per_iteration[s:e] for s, e in zip(starts, ends)]
    centres, means, stds = window_statistics(
        np.array(ends), np.array([r.mean() for r in rows]), np.array([r.std() for r in rows]),
        np.array([len(r) for r in rows]), interval=20)
    assert centres.tolist() == [10.0, 30.0, 50.0]
    for index, (start, end) in enumerate([(0, 20), (20, 40), (40, 47)]):
        assert means[index] == pytest.approx(per_iteration[start:end].mean(), rel=1e-12)
        assert stds[index] == pytest.approx(per_iteration[start:end].std(ddof=1), rel=1e-9)


class Interrupted(Exception):
    pass


def test_resume_between_log_points_logs_every_iteration(tmp_path, monkeypatch):
    # With log interval 3 and checkpoint interval 4, a run resumed from iteration 8 must log iterations
    # 7-8 too (its row at 9 covers 7 to 9, as an uninterrupted run's does).
    common = dict(log_interval=3, checkpoint_interval=4, iterations=10, evaluate=False)
    train(tiny_config(tmp_path / "straight", **common))
    from alwa_det import loop

    batches, collate = [], loop.collate

    def collate_then_stop(samples):
        batches.append(len(samples))
        if len(batches) == 9:  # the batch of iteration 9: 8 trained, checkpoint at 8, no log row since 6
            raise Interrupted
        return collate(samples)

    monkeypatch.setattr(loop, "collate", collate_then_stop)
    with pytest.raises(Interrupted):
        train(tiny_config(tmp_path / "resumed", **common))
    monkeypatch.undo()
    assert load_checkpoint(str(tmp_path / "resumed"))["iteration"] == 8
    train(tiny_config(tmp_path / "resumed", **common), resume=str(tmp_path / "resumed"))
    drop_time = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    straight_rows = _read_log(tmp_path / "straight" / "log.csv")
    assert [int(r["iteration"]) for r in straight_rows] == [3, 6, 9, 10]
    assert drop_time(_read_log(tmp_path / "resumed" / "log.csv")) == drop_time(straight_rows)
    a = torch.load(tmp_path / "straight" / "model_final.pt")
    b = torch.load(tmp_path / "resumed" / "model_final.pt")
    assert all(torch.equal(a[key], b[key]) for key in a)


@pytest.mark.parametrize("log_interval, caught_at", [(2, 4), (5, 4)])
def test_a_non_finite_loss_stops_training_keeping_the_last_good_checkpoint(tmp_path, monkeypatch, log_interval, caught_at):
    # A NaN loss would train a model whose every parameter is NaN, exit 0 and say nothing.
    # Caught at the next log point (4 with interval 2) or checkpoint (4 with log interval 5), never later.
    from alwa_det import loop

    build, steps = loop.build_detector, []

    def poisoned_detector(*args, **kwargs):
        model = build(*args, **kwargs)
        forward = model.forward

        def forward_with_nan(*inputs):
            losses = forward(*inputs)
            steps.append(None)
            if len(steps) == 3:
                losses["reg"] = losses["reg"] * float("nan")
            return losses

        model.forward = forward_with_nan
        return model

    monkeypatch.setattr(loop, "build_detector", poisoned_detector)
    run = tmp_path / "run"
    config = tiny_config(run, iterations=8, log_interval=log_interval, checkpoint_interval=2)
    with pytest.raises(TrainingDiverged, match=f"the loss and the weights became non-finite between "
                       f"iterations 3 and {caught_at}.*last.pt \\(iteration 2\\) is the last good state"):
        train(config)
    assert len(steps) == caught_at
    checkpoint = load_checkpoint(str(run))
    assert checkpoint["iteration"] == 2
    assert all(torch.isfinite(value).all() for value in checkpoint["model"].values() if value.is_floating_point())
    assert not (run / "model_final.pt").exists() and not (run / "metrics.json").exists()


def test_ctrl_c_while_a_loader_shuts_down_stops_training(tmp_path, monkeypatch):
    # With --workers 1 a KeyboardInterrupt raised inside the finished epoch's DataLoader iterator, as it
    # shuts its worker down, is swallowed there (SIGINT ignored about once in five tries).
    # Here the signal comes exactly then, at the first epoch's end (4 images, batches of 2).
    import signal

    from torch.utils.data import dataloader

    shutdown = dataloader._MultiProcessingDataLoaderIter._shutdown_workers
    sent = []

    def shutdown_on_ctrl_c(iterator):
        if not sent:
            sent.append(None)
            os.kill(os.getpid(), signal.SIGINT)
        return shutdown(iterator)

    monkeypatch.setattr(dataloader._MultiProcessingDataLoaderIter, "_shutdown_workers", shutdown_on_ctrl_c)
    run = tmp_path / "run"
    config = tiny_config(run, iterations=40, workers=1, synthetic_train_images=4, checkpoint_interval=2, evaluate=False)
    with pytest.raises(TrainingInterrupted, match="interrupted after iteration 3; its last checkpoint "
                       "is iteration 2"):
        train(config)
    assert sent and load_checkpoint(str(run))["iteration"] == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # given back
