"""alwa_ext.integrations.mmdet against mmengine: registration, mmdet's loss call convention and
ALWAHook in a real mmengine Runner. mmdet itself needs a compiled mmcv and is not installed; its
registries are stood in for by mmengine registries under an ``mmdet`` module."""
from __future__ import annotations

import io
import sys
import types
import warnings

import pytest
import torch

mmengine = pytest.importorskip("mmengine")

import torch.nn.functional as F  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402
from mmengine.model import BaseModel  # noqa: E402
from mmengine.registry import HOOKS, MODELS, Registry  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import alwa_ext  # noqa: E402
import alwa_ext.integrations.mmdet as alwa_mmdet  # noqa: E402
from helpers import reference  # noqa: E402
from alwa_ext.integrations.mmdet import ALWAHook, register  # noqa: E402
from alwa_ext.kinds import AVG_FACTOR_EPS  # noqa: E402
from integration_helpers import alwa2_lambda, no_host_transfers, single_thread, to_meta  # noqa: E402,F401

LOSS_NAMES = {
    "AlwaBoxLoss": alwa_ext.nn.BoxLoss,
    "AlwaIoULoss": alwa_ext.nn.IoULoss,
    "AlwaGIoULoss": alwa_ext.nn.GIoULoss,
    "AlwaDIoULoss": alwa_ext.nn.DIoULoss,
    "AlwaCIoULoss": alwa_ext.nn.CIoULoss,
    "AlwaEIoULoss": alwa_ext.nn.EIoULoss,
    "AlwaSIoULoss": alwa_ext.nn.SIoULoss,
    "AlwaL1Loss": alwa_ext.nn.L1Loss,
    "AlwaSmoothL1Loss": alwa_ext.nn.SmoothL1Loss,
    "AlwaSigmoidFocalLoss": alwa_ext.nn.SigmoidFocalLoss,
    "AlwaDistributionFocalLoss": alwa_ext.nn.DistributionFocalLoss,
}


def fresh_registries(scope):
    return Registry("model", parent=MODELS, scope=scope), Registry("hook", parent=HOOKS, scope=scope)


# --------------------------------------------------------------------------- registration


def test_register_fills_the_given_registries_and_builds_from_configs():
    models, hooks = fresh_registries("alwa_test_given")
    assert register(models=models, hooks=hooks) == {"models": list(LOSS_NAMES), "hooks": ["ALWAHook"]}
    assert register(models=models, hooks=hooks)["hooks"] == ["ALWAHook"]  # again: a no-op
    for name, cls in LOSS_NAMES.items():
        assert models.get(name) is cls
    loss = models.build(dict(type="AlwaCIoULoss", loss_weight=2.0, reduction="sum", eps=1e-6))
    assert type(loss) is alwa_ext.nn.CIoULoss and (loss.loss_weight, loss.reduction, loss.eps) == (2.0, "sum", 1e-6)
    hook = hooks.build(dict(type="ALWAHook", cls_key="loss_rpn_cls", reg_key="loss_rpn_bbox", mode="alwa1", interval=50))
    assert isinstance(hook, ALWAHook) and (hook.alwa.mode, hook.alwa.interval) == ("alwa1", 50)

    only_models, _ = fresh_registries("alwa_test_models_only")
    assert register(models=only_models) == {"models": list(LOSS_NAMES), "hooks": []}


def test_register_refuses_a_name_taken_by_another_class_unless_forced():
    models, hooks = fresh_registries("alwa_test_taken")
    models.register_module(name="AlwaGIoULoss", module=torch.nn.L1Loss)
    with pytest.raises(KeyError, match="AlwaGIoULoss"):
        register(models=models)
    register(models=models, force=True)
    assert models.get("AlwaGIoULoss") is alwa_ext.nn.GIoULoss
    with pytest.raises(TypeError, match="hooks"):
        register(hooks={"ALWAHook": None})


def fake_mmdet(monkeypatch, scope):
    """mmdet.registry as mmdet defines it: MODELS / HOOKS children of mmengine's."""
    models, hooks = fresh_registries(scope)
    package, registry = types.ModuleType("mmdet"), types.ModuleType("mmdet.registry")
    registry.MODELS, registry.HOOKS = models, hooks
    package.registry = registry
    monkeypatch.setitem(sys.modules, "mmdet", package)
    monkeypatch.setitem(sys.modules, "mmdet.registry", registry)
    return models, hooks


def test_register_defaults_to_mmdets_registries(monkeypatch):
    models, hooks = fake_mmdet(monkeypatch, "alwa_test_mmdet")
    register()
    assert models.get("AlwaSIoULoss") is alwa_ext.nn.SIoULoss and hooks.get("ALWAHook") is ALWAHook
    # What importing the module runs: with mmdet importable, custom_imports alone registers.
    models, hooks = fake_mmdet(monkeypatch, "alwa_test_mmdet_import")
    alwa_mmdet._register_with_mmdet_if_present()
    assert "AlwaGIoULoss" in models.module_dict and "ALWAHook" in hooks.module_dict


def test_register_without_mmdet_says_how_to_pass_registries(monkeypatch):
    monkeypatch.setitem(sys.modules, "mmdet", None)  # makes `import mmdet` fail
    with pytest.raises(ImportError, match="register\\(models="):
        register()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        alwa_mmdet._register_with_mmdet_if_present()  # at import, mmdet absent: silent

    monkeypatch.setitem(sys.modules, "mmdet", types.ModuleType("mmdet"))  # present but broken
    with pytest.warns(UserWarning, match="not registered with mmdet"):
        alwa_mmdet._register_with_mmdet_if_present()  # at import: a warning, not an error


# --------------------------------------------------------------------------- mmdet's call convention


def boxes(seed, n=6):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * 20
    return torch.cat([xy, xy + torch.rand(n, 2, generator=g, dtype=torch.float64) * 10 + 1], 1)


@pytest.mark.parametrize(
    "name, kind, config",
    [
        ("AlwaGIoULoss", "giou", {}),
        ("AlwaCIoULoss", "ciou", {}),
        ("AlwaEIoULoss", "eiou", {"focal_gamma": 0.5}),
        ("AlwaSIoULoss", "siou", {}),
        ("AlwaL1Loss", "l1", {}),
        ("AlwaSmoothL1Loss", "smooth_l1", {"beta": 0.5}),
        ("AlwaBoxLoss", "diou", {"loss": "diou", "alpha": 2.0}),
    ],
)
def test_losses_follow_mmdets_call_convention(name, kind, config):
    models, _ = fresh_registries(f"alwa_test_call_{name}")
    register(models=models)
    loss = models.build(dict(type=name, loss_weight=2.0, **config))
    options = {k: v for k, v in config.items() if k != "loss"}
    pred, target = boxes(0).requires_grad_(), boxes(1)
    per_element = reference.box_loss(pred, target, kind, reduction="none", **options)  # (n,) or (n, 4)
    coordinate_kind = per_element.dim() == 2
    weight = torch.rand(per_element.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    close = dict(rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(loss(pred, target), 2.0 * per_element.mean(), **close)
    torch.testing.assert_close(loss(pred, target, weight), 2.0 * (per_element * weight).mean(), **close)
    # mmdet's weight_reduce_loss: mean with avg_factor divides the sum by avg_factor + eps
    torch.testing.assert_close(
        loss(pred, target, weight, avg_factor=3.0), 2.0 * (per_element * weight).sum() / (3.0 + AVG_FACTOR_EPS), **close
    )
    torch.testing.assert_close(
        loss(pred, target, weight, avg_factor=torch.tensor(3.0, dtype=torch.float64)),
        2.0 * (per_element * weight).sum() / (3.0 + AVG_FACTOR_EPS),
        **close,
    )
    torch.testing.assert_close(loss(pred, target, weight, reduction_override="none"), 2.0 * per_element * weight, **close)
    torch.testing.assert_close(loss(pred, target, weight, reduction_override="sum"), 2.0 * (per_element * weight).sum(), **close)
    if not coordinate_kind:  # IoU kinds average a per-coordinate weight, as mmdet's IoU losses do
        weight4 = weight.unsqueeze(-1).expand(-1, 4) * torch.tensor([0.5, 1.0, 1.5, 1.0], dtype=torch.float64)
        torch.testing.assert_close(loss(pred, target, weight4, reduction_override="sum"), 2.0 * (per_element * weight).sum(), **close)
    # mmdet passes a loss module's **kwargs on to the loss function: here box_loss options
    torch.testing.assert_close(
        loss(pred, target, eps=1e-3, reduction_override="sum"),
        2.0 * reference.box_loss(pred, target, kind, reduction="sum", **{**options, "eps": 1e-3}),
        **close,
    )
    loss(pred, target, weight, avg_factor=2.0).backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    # a zero weight gives 0 without mmdet's `if not torch.any(weight > 0)` host check
    assert loss(pred, target, torch.zeros_like(weight), avg_factor=torch.tensor(0.0, dtype=torch.float64)).item() == 0.0


def test_losses_take_anchor_deltas_as_per_call_options():
    anchors = boxes(3)
    deltas = torch.randn(6, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 0.3
    target = boxes(5)
    loss = alwa_ext.nn.GIoULoss(reduction="sum")
    decoded = alwa_ext.decode_deltas(deltas, anchors, stds=(0.1, 0.1, 0.2, 0.2))
    torch.testing.assert_close(
        loss(deltas, target, box_format="deltas", anchors=anchors, delta_stds=(0.1, 0.1, 0.2, 0.2)),
        reference.box_loss(decoded, target, "giou", reduction="sum"),
        rtol=1e-9,
        atol=1e-12,
    )


def test_loss_call_errors_name_the_argument():
    loss = alwa_ext.nn.GIoULoss()
    pred, target = boxes(0), boxes(1)
    with pytest.raises(TypeError, match="'linear'"):
        loss(pred, target, linear=True)
    with pytest.raises(ValueError, match="reduction_override"):
        loss(pred, target, reduction_override="avg")
    with pytest.raises(ValueError, match="avg_factor"):
        loss(pred, target, avg_factor=2.0, reduction_override="sum")
    with pytest.raises(ValueError, match="weight"):
        loss(pred, target, torch.ones(5, dtype=torch.float64))


def test_loss_modules_read_nothing_back_from_the_device():
    loss = alwa_ext.nn.GIoULoss(loss_weight=2.0)
    pred, target, weight = to_meta((boxes(0).requires_grad_(), boxes(1), torch.ones(6, dtype=torch.float64)))
    with no_host_transfers():
        loss(pred, target, weight, avg_factor=4.0).backward()  # a Python avg_factor is filled in on the device
        loss(pred, target, weight.unsqueeze(-1).expand(-1, 4), reduction_override="sum")
    assert pred.grad.device.type == "meta"


def test_nan_in_gives_nan_out():
    pred, target = boxes(0), boxes(1)
    pred[2, 2] = float("nan")
    assert alwa_ext.nn.CIoULoss()(pred, target).isnan()
    assert alwa_ext.nn.SmoothL1Loss()(pred, target).isnan()


# --------------------------------------------------------------------------- ALWAHook


def test_hook_arguments_are_checked():
    with pytest.raises(ValueError, match="reg_key"):
        ALWAHook(cls_key="loss_cls", reg_key="loss_cls")
    with pytest.raises(ValueError, match="log_key"):
        ALWAHook(log_key="alwa_loss_weight")
    with pytest.raises(ValueError, match="cls_key"):
        ALWAHook(cls_key="")
    with pytest.raises(ValueError, match="mode"):
        ALWAHook(mode="alwa3")
    hook = ALWAHook()
    with pytest.raises(KeyError, match="loss_bbox"):
        hook.weight_losses({"loss_cls": torch.tensor(1.0)})
    with pytest.raises(TypeError, match="loss_bbox"):
        hook.weight_losses({"loss_cls": torch.tensor(1.0), "loss_bbox": 0.5})


def test_hook_weighting_reads_nothing_back_from_the_device():
    hook = ALWAHook(interval=2)
    hook.alwa.to("meta")
    losses = to_meta({"loss_cls": [torch.tensor(1.0), torch.ones(3)], "loss_bbox": torch.ones(2, 4), "acc": torch.tensor(0.5)})
    with no_host_transfers():
        hook.weight_losses(losses)
        weighted = hook.weight_losses(losses)  # the update iteration
    assert weighted["acc"] is losses["acc"]
    assert all(weighted[k].device.type == "meta" and weighted[k].shape == () for k in ("loss_cls", "loss_bbox", "alwa_lambda_cls"))


def test_hook_against_a_minimal_runner():
    # The hook needs runner.model (and runner._resume when loading): a namespace will do.
    class Model(BaseModel):
        def forward(self, *args, **kwargs):
            raise NotImplementedError

    model = Model()
    runner = types.SimpleNamespace(model=model)
    hook = ALWAHook(interval=2, cls_weight=0.5)
    hook.before_train(runner)
    hook.before_train(runner)  # a second start (after a run that raised) must not weight twice
    losses = {"loss_cls": [torch.tensor(2.0), torch.tensor([1.0, 3.0])], "loss_bbox": torch.tensor(0.5), "acc": torch.tensor(0.9)}
    total, log_vars = model.parse_losses(losses)
    assert log_vars["loss_cls"].item() == pytest.approx(0.5 * (2.0 + 2.0))
    assert total.item() == pytest.approx(0.5 * 4.0 + 0.5) and log_vars["alwa_lambda_cls"].item() == 0.5
    assert hook.alwa.step.item() == 1
    hook.after_train(runner)
    assert "parse_losses" not in vars(model) and model.parse_losses(losses)[0].item() == pytest.approx(4.5)

    checkpoint = {}
    hook.before_save_checkpoint(runner, checkpoint)
    restored = ALWAHook(interval=2, cls_weight=0.5)
    restored.after_load_checkpoint(runner, checkpoint)  # no runner._resume: taken as resuming
    assert restored.alwa.step.item() == 1
    fresh = ALWAHook(interval=2, cls_weight=0.5)
    fresh.after_load_checkpoint(types.SimpleNamespace(model=model, _resume=False), checkpoint)
    assert fresh.alwa.step.item() == 0
    with pytest.raises(RuntimeError, match="saved with interval=2"):
        ALWAHook(interval=3).after_load_checkpoint(runner, checkpoint)


class ToyDetector(BaseModel):
    """Two 'heads' on a linear feature: cross-entropy per 'level' (a list, as mmdet's heads
    return) and a box loss built from the registry, as a detector config would."""

    def __init__(self, box_loss_cfg):
        super().__init__()
        torch.manual_seed(0)
        self.cls = torch.nn.Linear(4, 3)
        self.reg = torch.nn.Linear(4, 4)
        self.loss_bbox = MODELS.build(box_loss_cfg)
        self.raw = []  # what each forward returned, before any weighting

    def forward(self, inputs, data_samples=None, mode="tensor"):
        logits = self.cls(inputs)
        loss_cls = [F.cross_entropy(logits, data_samples["labels"]), 0.5 * F.cross_entropy(logits[:1], data_samples["labels"][:1])]
        pred = data_samples["anchors"] + self.reg(inputs)
        loss_bbox = self.loss_bbox(pred, data_samples["boxes"], avg_factor=inputs.new_tensor(2.0))
        losses = {"loss_cls": loss_cls, "loss_bbox": loss_bbox, "loss_extra": 0.1 * loss_bbox.detach()}
        self.raw.append({"loss_cls": sum(v.item() for v in loss_cls), "loss_bbox": loss_bbox.item()})
        return losses


class RecordOutputs(Hook):
    def __init__(self):
        self.outputs = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.outputs.append({k: float(v.detach()) for k, v in outputs.items()})


def toy_dataset(count=12):
    g = torch.Generator().manual_seed(7)
    items = []
    for _ in range(count):
        anchor = torch.cat([torch.rand(2, generator=g) * 10, torch.rand(2, generator=g) * 10 + 12])
        items.append(
            {
                "inputs": torch.randn(4, generator=g),
                "data_samples": {"labels": torch.randint(0, 3, (), generator=g), "anchors": anchor,
                                 "boxes": anchor + torch.randn(4, generator=g)},
            }
        )
    return items


def make_runner(work_dir, name, hooks, max_iters=6, **kwargs):
    return Runner(
        model=ToyDetector(dict(type="AlwaGIoULoss", loss_weight=2.0)),
        work_dir=str(work_dir),
        experiment_name=name,
        train_dataloader=dict(
            dataset=toy_dataset(), sampler=dict(type="DefaultSampler", shuffle=False), batch_size=2,
            collate_fn=dict(type="default_collate"), num_workers=0,
        ),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.05)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=3, by_epoch=False)),
        custom_hooks=hooks,
        randomness=dict(seed=0),
        **kwargs,
    )


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Environment variable TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
def test_alwa_hook_weights_the_losses_and_resumes_from_a_checkpoint(tmp_path, monkeypatch):
    register(models=MODELS, hooks=HOOKS)  # mmengine's root registries: what the runner builds from
    hook_cfg = dict(type="ALWAHook", cls_key="loss_cls", reg_key="loss_bbox", mode="alwa2", interval=2)
    record = RecordOutputs()
    runner = make_runner(tmp_path / "full", "alwa_full", [hook_cfg, record])
    hook = next(h for h in runner.hooks if isinstance(h, ALWAHook))
    model = runner.model
    runner.train()

    # Every iteration: the pair weighted by λ in force (1 for the first window), the rest as is,
    # the total = their sum, λcls logged; λ after each window = the rule on the recorded values.
    lam, window = 1.0, []
    for raw, out in zip(model.raw, record.outputs):
        assert out["loss_cls"] == pytest.approx(lam * raw["loss_cls"], rel=1e-6)
        assert out["loss_bbox"] == pytest.approx(raw["loss_bbox"], rel=1e-6)
        assert out["loss"] == pytest.approx(out["loss_cls"] + out["loss_bbox"] + out["loss_extra"], rel=1e-6)
        window.append((out["loss_cls"], out["loss_bbox"]))
        if len(window) == 2:
            lam = alwa2_lambda([c for c, _ in window], [r for _, r in window], current=lam)
            window = []
        assert out["alwa_lambda_cls"] == pytest.approx(lam, rel=1e-6)
    assert len(record.outputs) == 6 and hook.alwa.num_updates.item() == 3
    assert lam < 1  # cross-entropy varies more than this box loss: ALWA lowered λcls
    assert "parse_losses" not in vars(model)  # unwrapped after training

    checkpoint = torch.load(tmp_path / "full" / "iter_3.pth", map_location="cpu", weights_only=False)
    saved = checkpoint["alwa"]["loss_cls/loss_bbox"]
    assert saved["state"]["_extra_state"]["interval"] == 2
    assert (saved["state"]["step"].item(), saved["state"]["window"][0, 0].item()) == (3, 1)  # mid-window
    buffer = io.BytesIO()
    torch.save(checkpoint["alwa"], buffer)
    buffer.seek(0)
    torch.load(buffer, weights_only=True)  # ALWA's entry: plain tensors and numbers

    # mmengine 0.10.7 loads its checkpoints with torch.load's default, weights_only=True since
    # torch 2.6, which refuses mmengine's own HistoryBuffer (message hub); its resume needs this.
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

    resumed_hook = ALWAHook(mode="alwa2", interval=2)
    resumed = make_runner(tmp_path / "resumed", "alwa_resumed", [resumed_hook], load_from=str(tmp_path / "full" / "iter_3.pth"), resume=True)
    resumed.train()
    for key, value in hook.alwa.state_dict().items():  # bit for bit where the full run ended
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(resumed_hook.alwa.state_dict()[key], value, rtol=0, atol=0)

    fine_tune_hook = ALWAHook(mode="alwa2", interval=2)
    fine_tune = make_runner(tmp_path / "fine_tune", "alwa_fine_tune", [fine_tune_hook], max_iters=1,
                            load_from=str(tmp_path / "full" / "iter_3.pth"))
    fine_tune.train()
    assert fine_tune_hook.alwa.step.item() == 1  # load_from without resume: ALWA starts afresh
