"""Tests of preimage.train.loop: the Trainer against a bare PyTorch loop, resume, failure modes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from preimage.errors import CheckpointError, ConfigError, DataError, ShapeError, TrainingError
from preimage.nn import logits_of
from preimage.train.augment import translate
from preimage.train.checkpoint import load_checkpoint, read_checkpoint_metadata, save_checkpoint
from preimage.train.config import TrainConfig
from preimage.train.loop import (
    Callback,
    Trainer,
    cosine_factor,
    cross_entropy_loss,
    derive_seed,
    epoch_permutation,
)

Data = tuple[Tensor, Tensor]
Build = Callable[[], nn.Module]


def config(**overrides: Any) -> TrainConfig:
    base = {"epochs": 3, "batch_size": 8, "lr": 1e-2, "device": "cpu"}
    return TrainConfig(**{**base, **overrides})


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_matches_a_bare_pytorch_loop(mlp: Build, data: Data) -> None:
    cfg = config(
        batch_size=16, lr_step=1, lr_decay=0.5, weight_decay=1e-3, max_shift=0, dequantize=False
    )
    trainer = Trainer(mlp(), data, None, cfg, progress=False)
    final = trainer.fit()

    x, y = data
    ref = mlp()
    opt = torch.optim.Adamax(ref.parameters(), lr=1e-2, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    epoch_losses = []
    for epoch in range(3):
        total = 0.0
        for idx in epoch_permutation(40, seed=0, epoch=epoch).split(16):
            opt.zero_grad()
            loss = F.cross_entropy(ref(x[idx]), y[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        epoch_losses.append(total / 40)
        sched.step()

    assert_same_state(trainer.model, ref)
    assert [h["lr"] for h in trainer.history] == pytest.approx([1e-2, 5e-3, 2.5e-3])
    assert [h["train_loss"] for h in trainer.history] == pytest.approx(epoch_losses, rel=1e-12)
    assert final == trainer.history[-1] and final["epoch"] == 3
    assert set(final) == {
        "epoch",
        "train_loss",
        "train_accuracy",
        "lr",
        "epoch_time_s",
        "samples_per_s",
    }
    assert 0.0 <= final["train_accuracy"] <= 1.0 and final["samples_per_s"] > 0


def test_cosine_schedule_matches_a_bare_pytorch_loop(mlp: Build, data: Data) -> None:
    # 40 samples in batches of 16: 3 steps per epoch, T = 6 steps, each at its own lr.
    cfg = config(epochs=2, batch_size=16, lr_schedule="cosine", max_shift=0, dequantize=False)
    trainer = Trainer(mlp(), data, None, cfg, progress=False)
    trainer.fit()

    x, y = data
    ref = mlp()
    opt = torch.optim.Adamax(ref.parameters(), lr=1e-2, weight_decay=1e-4)
    lrs = []
    for epoch in range(2):
        for i, idx in enumerate(epoch_permutation(40, seed=0, epoch=epoch).split(16)):
            lr = 1e-2 * 0.5 * (1 + math.cos(math.pi * (3 * epoch + i) / 6))
            lrs.append(lr)
            for group in opt.param_groups:
                group["lr"] = lr
            opt.zero_grad()
            F.cross_entropy(ref(x[idx]), y[idx]).backward()
            opt.step()

    assert_same_state(trainer.model, ref)
    assert [h["lr"] for h in trainer.history] == pytest.approx([lrs[0], lrs[3]])
    assert lrs[0] == 1e-2 and lrs[-1] < 1e-3
    assert cosine_factor(0, 6) == 1.0 and cosine_factor(3, 6) == pytest.approx(0.5)
    assert cosine_factor(6, 6) == cosine_factor(9, 6) == 0.0


def test_cosine_schedule_resumes_exactly_but_not_with_other_epochs(
    mlp: Build, data: Data, tmp_path: Path
) -> None:
    class Stop(Callback):
        def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
            if epoch == 2:
                raise KeyboardInterrupt

    cosine = config(lr_schedule="cosine")
    straight = Trainer(mlp(), data, None, cosine, progress=False)
    straight.fit()
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        Trainer(mlp(), data, None, cosine, out_dir=out, callbacks=[Stop()], progress=False).fit()
    resumed = Trainer(mlp(), data, None, cosine, out_dir=out, progress=False)
    resumed.fit(resume=True)
    assert_same_state(resumed.model, straight.model)
    assert [h["lr"] for h in resumed.history] == [h["lr"] for h in straight.history]
    # Under the cosine schedule more epochs would change the lr of every step already taken.
    longer = config(epochs=5, lr_schedule="cosine")
    with pytest.raises(ConfigError, match="different epochs"):
        Trainer(mlp(), data, None, longer, out_dir=out, progress=False).fit(resume=True)


def test_checkpoints_without_newer_config_fields_resume(
    mlp: Build, data: Data, tmp_path: Path
) -> None:
    # A checkpoint written before lr_schedule existed trained with the step schedule.
    old = Trainer(mlp(), data, None, config(epochs=1), out_dir=tmp_path, progress=False)
    old.fit()
    path = tmp_path / "checkpoints" / "last.safetensors"
    state = load_checkpoint(path, model=mlp())
    del state["config"]["lr_schedule"]
    save_checkpoint(
        path, model=old.model, optimizer=old.optimizer, scheduler=old.scheduler, state=state
    )
    assert "lr_schedule" not in json.loads(read_checkpoint_metadata(path)["state"])["config"]
    cosine = config(epochs=2, lr_schedule="cosine")
    with pytest.raises(ConfigError, match=r"different epochs, lr_schedule$"):
        Trainer(mlp(), data, None, cosine, out_dir=tmp_path, progress=False).fit(resume=True)
    resumed = Trainer(mlp(), data, None, config(epochs=2), out_dir=tmp_path, progress=False)
    resumed.fit(resume=True)
    assert [h["epoch"] for h in resumed.history] == [1, 2]


def test_evaluate_matches_direct_computation(cnn: Build, data: Data) -> None:
    model = cnn()
    trainer = Trainer(model, data, None, config(eval_batch_size=7), progress=False)
    model.train()
    result = trainer.evaluate(*data)
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        logits = model.logits(data[0])
    expected_loss = F.cross_entropy(logits.double(), data[1])
    assert result["loss"] == pytest.approx(float(expected_loss), rel=1e-6)
    assert result["accuracy"] == pytest.approx(float((logits.argmax(1) == data[1]).double().mean()))


def test_test_metrics_in_history(mlp: Build, data: Data, test_data: Data) -> None:
    trainer = Trainer(mlp(), data, test_data, config(epochs=1), progress=False)
    final = trainer.fit()
    again = trainer.evaluate(*test_data)
    assert final["test_loss"] == pytest.approx(again["loss"])
    assert final["test_accuracy"] == pytest.approx(again["accuracy"])


def test_progress_prints_one_line_per_epoch_when_not_a_terminal(
    mlp: Build, data: Data, test_data: Data, capsys: pytest.CaptureFixture[str]
) -> None:
    Trainer(mlp(), data, test_data, config(epochs=2), progress=True).fit()
    lines = [line for line in capsys.readouterr().err.splitlines() if "test_accuracy=" in line]
    assert [line.split()[:2] for line in lines] == [["epoch", "1/2"], ["epoch", "2/2"]]


def test_augmentation_shifts_and_dequantises_each_batch(data: Data) -> None:
    images = data[0]
    ids = torch.arange(len(images))  # labels identify the source image
    seen: list[tuple[Tensor, Tensor]] = []

    def recording_loss(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, float]]:
        seen.append((x.clone(), y.clone()))
        return model(x).pow(2).mean(), {}

    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 1))
    cfg = config(epochs=2, max_shift=2, lr=1e-6)
    Trainer(model, (images, ids), None, cfg, loss_fn=recording_loss, progress=False).fit()
    assert sum(len(y) for _, y in seen) == 2 * len(images)
    offsets = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)]
    used = set()
    for x, y in seen:
        level = torch.floor(x * 256)
        assert bool(((x * 256 - level) > 0).float().mean() > 0.99)  # noise on (almost) every pixel
        grid = torch.round(images[y] * 255)
        for b in range(len(y)):
            hits = [
                o
                for o in offsets
                if torch.equal(translate(grid[b : b + 1], torch.tensor([o]))[0], level[b])
            ]
            assert hits, "a batch entry is no shifted copy of its source image"
            used.add(hits[0])
    assert len(used) > 10
    # Epochs see different orders.
    first = torch.cat([y for _, y in seen[:5]])
    second = torch.cat([y for _, y in seen[5:]])
    assert sorted(first.tolist()) == sorted(second.tolist()) == list(range(40))
    assert not torch.equal(first, second)


def run_epochs(build: Build, data: Data, test_data: Data, out: Path, epochs: int) -> Trainer:
    trainer = Trainer(build(), data, test_data, config(epochs=epochs), out_dir=out, progress=False)
    # A resumed process starts from an unrelated global RNG state; so does every run here.
    torch.manual_seed(len(str(out)) * 7919 + epochs)
    trainer.fit(resume=True)
    return trainer


def test_resume_is_bit_identical(cnn: Build, data: Data, test_data: Data, tmp_path: Path) -> None:
    straight = run_epochs(cnn, data, test_data, tmp_path / "a", 3)
    run_epochs(cnn, data, test_data, tmp_path / "b", 2)
    state = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.safetensors", model=cnn())
    assert state["epoch"] == 2 and state["global_step"] == 10
    resumed = run_epochs(cnn, data, test_data, tmp_path / "b", 3)
    assert_same_state(straight.model, resumed.model)
    assert resumed.global_step == straight.global_step == 15
    timing = {"epoch_time_s", "samples_per_s"}

    def strip(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in h.items() if k not in timing} for h in history]

    assert strip(resumed.history) == strip(straight.history)
    a = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.safetensors", model=cnn())
    b = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.safetensors", model=cnn())
    assert strip(a["history"]) == strip(b["history"])
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert strip(metrics["history"]) == strip(straight.history)
    # A finished run resumed with the same epochs trains no further.
    again = run_epochs(cnn, data, test_data, tmp_path / "b", 3)
    assert_same_state(again.model, straight.model)


def test_in_epoch_randomness_follows_seed_and_epoch(mlp: Build, data: Data) -> None:
    def draws(seed: int) -> list[float]:
        out: list[float] = []

        def noisy(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, float]]:
            out.append(float(torch.rand(())))
            return cross_entropy_loss(model, x, y)

        cfg = config(epochs=2, max_steps_per_epoch=2, seed=seed)
        torch.manual_seed(len(out) + seed + 5)
        Trainer(mlp(), data, None, cfg, loss_fn=noisy, progress=False).fit()
        return out

    a, b = draws(0), draws(0)
    assert a == b and len(set(a)) == 4  # reproducible, and fresh in every step and epoch
    assert set(draws(1)).isdisjoint(a)


def test_fit_leaves_the_global_rng_alone(cnn: Build, data: Data) -> None:
    trainer = Trainer(cnn(), data, None, config(epochs=1), progress=False)
    before = torch.get_rng_state()
    trainer.fit()
    assert torch.equal(torch.get_rng_state(), before)


CRASH_SCRIPT = """
import os, sys
import torch
sys.path.insert(0, sys.argv[2])
from conftest import TinyCNN, make_data
from preimage.train import Callback, TrainConfig, Trainer

torch.set_num_threads(1)

class Crash(Callback):
    def on_batch_end(self, trainer, step, metrics):
        if step == 12:  # epoch 3 (5 steps per epoch), second step
            os._exit(17)

torch.manual_seed(0)
cfg = TrainConfig(epochs=3, batch_size=8, lr=1e-2, device="cpu")
trainer = Trainer(TinyCNN(), make_data(40, seed=1), make_data(24, seed=2), cfg,
                  out_dir=sys.argv[1], callbacks=[Crash()], progress=False)
trainer.fit()
"""


def test_killed_mid_epoch_then_resumed(
    cnn: Build, data: Data, test_data: Data, tmp_path: Path
) -> None:
    script = tmp_path / "crash.py"
    script.write_text(textwrap.dedent(CRASH_SCRIPT))
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    here = str(Path(__file__).parent)
    proc = subprocess.run(
        [sys.executable, str(script), str(run), here], env=env, capture_output=True, timeout=120
    )
    assert proc.returncode == 17, proc.stderr.decode()[-2000:]
    ckpt = run / "checkpoints" / "last.safetensors"
    assert json.loads(read_checkpoint_metadata(ckpt)["state"])["epoch"] == 2
    assert [p.name for p in ckpt.parent.iterdir()] == ["last.safetensors"]

    resumed = run_epochs(cnn, data, test_data, run, 3)
    straight = run_epochs(cnn, data, test_data, tmp_path / "straight", 3)
    assert_same_state(straight.model, resumed.model)


def test_nan_loss_keeps_the_last_good_checkpoint(mlp: Build, data: Data, tmp_path: Path) -> None:
    calls = 0

    def exploding(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, float]]:
        nonlocal calls
        calls += 1
        loss, metrics = cross_entropy_loss(model, x, y)
        return (loss * float("nan") if calls == 7 else loss), metrics

    ckpt = tmp_path / "checkpoints" / "last.safetensors"
    snapshot: dict[str, bytes] = {}

    class Snapshot(Callback):
        def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
            snapshot["bytes"] = ckpt.read_bytes()

    trainer = Trainer(
        mlp(),
        data,
        None,
        config(),
        loss_fn=exploding,
        out_dir=tmp_path,
        callbacks=[Snapshot()],
        progress=False,
    )
    with pytest.raises(
        TrainingError, match=r"loss became nan at epoch 2 step 2; the last good checkpoint"
    ):
        trainer.fit()
    assert ckpt.read_bytes() == snapshot["bytes"]
    assert load_checkpoint(ckpt, model=mlp())["epoch"] == 1

    calls = 6
    with pytest.raises(TrainingError, match="at epoch 1 step 1; no checkpoint was written"):
        Trainer(mlp(), data, None, config(), loss_fn=exploding, progress=False).fit()


def test_callbacks_see_every_event_in_order(mlp: Build, data: Data) -> None:
    events: list[tuple[Any, ...]] = []

    class Recorder(Callback):
        def on_train_start(self, trainer: Trainer) -> None:
            events.append(("start", trainer.optimizer is not None))

        def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
            events.append(("epoch_start", epoch))

        def on_batch_end(self, trainer: Trainer, step: int, metrics: dict[str, float]) -> None:
            events.append(("batch", step, sorted(metrics)))

        def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
            events.append(("epoch_end", epoch, metrics["epoch"]))

        def on_train_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
            events.append(("end", metrics["epoch"]))

    cfg = config(epochs=2, max_steps_per_epoch=2)
    Trainer(mlp(), data, None, cfg, callbacks=[Recorder()], progress=False).fit()
    batch = ["accuracy", "loss"]
    assert events == [
        ("start", True),
        ("epoch_start", 1),
        ("batch", 1, batch),
        ("batch", 2, batch),
        ("epoch_end", 1, 1),
        ("epoch_start", 2),
        ("batch", 3, batch),
        ("batch", 4, batch),
        ("epoch_end", 2, 2),
        ("end", 2),
    ]


class CountingLoss(nn.Module):
    """A stateful objective: its call counter must survive a resume."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def forward(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, float]]:
        self.calls += 1
        loss = F.cross_entropy(logits_of(model, x), y)
        return 2 * loss, {"half": float(loss.detach())}


def test_custom_stateful_loss_is_logged_and_resumed(mlp: Build, data: Data, tmp_path: Path) -> None:
    first = CountingLoss()
    trainer = Trainer(
        mlp(), data, None, config(epochs=2), loss_fn=first, out_dir=tmp_path, progress=False
    )
    final = trainer.fit()
    assert final["train_loss"] == pytest.approx(2 * final["train_half"])
    assert "train_accuracy" not in final
    second = CountingLoss()
    Trainer(
        mlp(), data, None, config(epochs=3), loss_fn=second, out_dir=tmp_path, progress=False
    ).fit(resume=True)
    assert int(second.calls) == 15


class AdversaryLoss(nn.Module):
    """A loss with its own network and inner Adam optimiser, stepped inside each call (as the
    independence cross-entropy does): both must resume exactly."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.probe = nn.Linear(3, 3)
        self.optimizer = torch.optim.Adam(self.probe.parameters(), lr=0.05)

    def forward(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, float]]:
        logits = logits_of(model, x)
        self.optimizer.zero_grad()
        inner = F.cross_entropy(self.probe(logits.detach()), y)
        inner.backward()
        self.optimizer.step()
        probe_ce = F.cross_entropy(self.probe(logits), y)
        return F.cross_entropy(logits, y) - 0.1 * probe_ce, {"probe": float(inner.detach())}


def test_loss_with_inner_optimizer_resumes_exactly(mlp: Build, data: Data, tmp_path: Path) -> None:
    def run(out: Path, epochs: int) -> tuple[Trainer, AdversaryLoss]:
        loss = AdversaryLoss()
        trainer = Trainer(
            mlp(), data, None, config(epochs=epochs), loss_fn=loss, out_dir=out, progress=False
        )
        trainer.fit(resume=True)
        return trainer, loss

    straight, loss_a = run(tmp_path / "a", 3)
    run(tmp_path / "b", 2)
    resumed, loss_b = run(tmp_path / "b", 3)
    assert_same_state(straight.model, resumed.model)
    assert_same_state(loss_a, loss_b)
    for pa, pb in zip(loss_a.probe.parameters(), loss_b.probe.parameters(), strict=True):
        state_a, state_b = loss_a.optimizer.state[pa], loss_b.optimizer.state[pb]
        assert torch.equal(state_a["exp_avg_sq"], state_b["exp_avg_sq"])
    assert "train_probe" in straight.history[-1]


def test_logits_method_is_preferred_and_tuples_are_refused(cnn: Build, data: Data) -> None:
    model = cnn()
    x = data[0][:4]
    model.eval()
    assert torch.equal(logits_of(model, x), model.logits(x))

    class PairOnly(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(64, 3)

        def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
            return self.lin(x.flatten(1)), x.new_zeros(len(x))

    with pytest.raises(ConfigError, match="give it a"):
        Trainer(PairOnly(), data, None, config(epochs=1), progress=False).fit()
    with pytest.raises(ShapeError, match="expected logits of shape"):
        logits_of(nn.Flatten(0), x)


def test_grad_clip_bounds_the_step(mlp: Build, data: Data) -> None:
    model = mlp()
    before = [p.detach().clone() for p in model.parameters()]
    cfg = config(
        epochs=1,
        optimizer="sgd",
        momentum=0.0,
        weight_decay=0.0,
        lr=1.0,
        grad_clip=0.01,
        max_steps_per_epoch=1,
    )
    trainer = Trainer(model, data, None, cfg, progress=False)
    trainer.fit()
    assert isinstance(trainer.optimizer, torch.optim.SGD)
    step = torch.cat(
        [(p.detach() - b).flatten() for p, b in zip(model.parameters(), before, strict=True)]
    )
    assert float(step.norm()) == pytest.approx(0.01, rel=1e-4)


@pytest.mark.parametrize(
    ("name", "cls"), [("adam", torch.optim.Adam), ("adamax", torch.optim.Adamax)]
)
def test_optimizer_choice(mlp: Build, data: Data, name: str, cls: type) -> None:
    trainer = Trainer(
        mlp(), data, None, config(epochs=1, optimizer=name, max_steps_per_epoch=1), progress=False
    )
    trainer.fit()
    assert type(trainer.optimizer) is cls
    assert trainer.optimizer.param_groups[0]["weight_decay"] == 1e-4


def test_max_steps_per_epoch_truncates(mlp: Build, data: Data) -> None:
    trainer = Trainer(mlp(), data, None, config(epochs=2, max_steps_per_epoch=3), progress=False)
    trainer.fit()
    assert trainer.global_step == 6


def test_resume_refusals(cnn: Build, mlp: Build, data: Data, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs an out_dir"):
        Trainer(mlp(), data, None, config(epochs=1), progress=False).fit(resume=True)
    Trainer(mlp(), data, None, config(epochs=1), out_dir=tmp_path, progress=False).fit()
    ckpt = (tmp_path / "checkpoints" / "last.safetensors").read_bytes()
    model = mlp()
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ConfigError, match="different batch_size, seed"):
        Trainer(
            model,
            data,
            None,
            config(epochs=2, batch_size=4, seed=1),
            out_dir=tmp_path,
            progress=False,
        ).fit(resume=True)
    assert all(torch.equal(v, reference[k]) for k, v in model.state_dict().items())
    with pytest.raises(CheckpointError, match="holds a 'TinyMLP' model, expected 'TinyCNN'"):
        Trainer(cnn(), data, None, config(epochs=2), out_dir=tmp_path, progress=False).fit(
            resume=True
        )
    assert (tmp_path / "checkpoints" / "last.safetensors").read_bytes() == ckpt


def test_run_files(mlp: Build, data: Data, test_data: Data, tmp_path: Path) -> None:
    trainer = Trainer(mlp(), data, test_data, config(epochs=2), out_dir=tmp_path, progress=False)
    final = trainer.fit()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["final"] == final and metrics["history"] == trainer.history
    meta = read_checkpoint_metadata(tmp_path / "checkpoints" / "last.safetensors")
    assert meta["model_class"] == "TinyMLP" and meta["optimizer_class"] == "Adamax"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints", "metrics.json"]


def test_progress_bar_draws_on_stderr(
    mlp: Build, data: Data, capsys: pytest.CaptureFixture[str]
) -> None:
    Trainer(mlp(), data, None, config(epochs=1), progress=True).fit()
    err = capsys.readouterr().err
    assert "epoch 1/1" in err and "samples/s" in err and "40/40" in err


@pytest.mark.parametrize(
    ("images", "labels", "error", "match"),
    [
        (torch.rand(5, 1, 8, 8), torch.zeros(4, dtype=torch.long), ShapeError, "expected"),
        (torch.rand(5, 1, 8, 8), torch.zeros(5), DataError, "labels must be integers"),
        (
            torch.randint(0, 255, (5, 64), dtype=torch.uint8),
            torch.zeros(5, dtype=torch.long),
            DataError,
            "floating point",
        ),
        (torch.rand(5, 64) * 255, torch.zeros(5, dtype=torch.long), DataError, r"in \[0, 1\]"),
        (torch.rand(0, 64), torch.zeros(0, dtype=torch.long), DataError, "empty"),
    ],
)
def test_bad_data_is_refused(images: Tensor, labels: Tensor, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        Trainer(nn.Linear(64, 2), (images, labels), None, config(), progress=False)


def test_bad_arguments_are_refused(data: Data) -> None:
    with pytest.raises(ConfigError, match=r"torch\.nn\.Module"):
        Trainer(lambda x: x, data, None, config(), progress=False)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="TrainConfig"):
        Trainer(nn.Linear(64, 2), data, None, {"epochs": 1}, progress=False)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="pair"):
        Trainer(nn.Linear(64, 2), data[0], None, config(), progress=False)  # type: ignore[arg-type]


def test_derived_seeds_separate_streams() -> None:
    seeds = {
        derive_seed(s, k, e) for s in range(3) for k in ("shuffle", "augment") for e in range(3)
    }
    assert len(seeds) == 18 and all(0 <= s < 2**63 for s in seeds)
    assert not torch.equal(epoch_permutation(50, 0, 0), epoch_permutation(50, 0, 1))
