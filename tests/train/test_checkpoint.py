"""Tests of preimage.train.checkpoint: lossless round trips, atomicity, corruption detection."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
from safetensors import safe_open
from torch import nn

from preimage.errors import CheckpointError
from preimage.train import checkpoint as ckpt
from preimage.train.checkpoint import (
    atomic_write_bytes,
    latest_checkpoint,
    load_checkpoint,
    read_checkpoint_metadata,
    save_checkpoint,
)


class Net(nn.Module):
    def __init__(self, hidden: int = 5) -> None:
        super().__init__()
        self.fc = nn.Linear(4, hidden)
        self.bn = nn.BatchNorm1d(hidden)
        self.out = nn.Linear(hidden, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.bn(self.fc(x))))


def train_steps(model: nn.Module, opt: torch.optim.Optimizer, sched: Any, steps: int) -> None:
    g = torch.Generator().manual_seed(123)
    for _ in range(steps):
        x = torch.randn(8, 4, generator=g)
        y = torch.randint(0, 3, (8,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        sched.step()


def trained(seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer, Any]:
    torch.manual_seed(seed)
    model = Net()
    opt = torch.optim.Adamax(model.parameters(), lr=1e-2, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    train_steps(model, opt, sched, 3)
    return model, opt, sched


def assert_same(a: Any, b: Any) -> None:
    """Recursive equality where tensors must agree in dtype, shape and every bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b)
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for u, v in zip(a, b, strict=True):
            assert_same(u, v)
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b)
    else:
        assert a == b and type(a) is type(b)


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    model, opt, sched = trained()
    return save_checkpoint(
        tmp_path / "sub" / "c.safetensors",
        model=model,
        optimizer=opt,
        scheduler=sched,
        state={"epoch": 3},
    )


def test_round_trip_restores_everything_bit_exactly(tmp_path: Path) -> None:
    model, opt, sched = trained()
    gen = torch.Generator().manual_seed(7)
    state = {
        "epoch": 3,
        "history": [{"loss": 0.5, "test_loss": float("nan"), "note": None}],
        "flags": (True, 1, 2.5, "x", float("inf")),
        "blob": b"\x00\xffraw",
        "ids": {0: "a", 1: [1, 2], "__odd": 3},
        "rng": {"shuffle": gen.get_state(), "torch": torch.get_rng_state()},
        "extra": {"tensor": torch.arange(4, dtype=torch.int16)},
    }
    path = save_checkpoint(
        tmp_path / "c.safetensors", model=model, optimizer=opt, scheduler=sched, state=state
    )
    torch.manual_seed(99)
    model2 = Net()
    opt2 = torch.optim.Adamax(model2.parameters(), lr=5.0)
    sched2 = torch.optim.lr_scheduler.StepLR(opt2, step_size=7, gamma=0.1)
    loaded = load_checkpoint(
        path, model=model2, optimizer=opt2, scheduler=sched2, expected_model_class="Net"
    )
    assert_same(state, loaded)
    assert_same(model.state_dict(), model2.state_dict())
    assert_same(opt.state_dict(), opt2.state_dict())
    assert_same(sched.state_dict(), sched2.state_dict())
    # Training on from the restored copy stays bit-identical to the original.
    train_steps(model, opt, sched, 3)
    train_steps(model2, opt2, sched2, 3)
    assert_same(model.state_dict(), model2.state_dict())
    # A restored generator state continues the same stream.
    g2 = torch.Generator()
    g2.set_state(loaded["rng"]["shuffle"])
    assert torch.equal(torch.rand(5, generator=gen), torch.rand(5, generator=g2))


def test_file_layout_is_plain_safetensors_with_prefixes(tmp_path: Path) -> None:
    model, opt, sched = trained()
    path = save_checkpoint(
        tmp_path / "c.safetensors",
        model=model,
        optimizer=opt,
        scheduler=sched,
        state={"rng": {"g": torch.Generator().get_state()}, "w": torch.ones(2)},
        model_class="firevnet",
    )
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
        meta = f.metadata()
    assert {f"model.{k}" for k in model.state_dict()} <= keys
    assert "optim.state.0.exp_avg" in keys and "optim.state.0.exp_inf" in keys
    assert "rng.g" in keys and "state.w" in keys
    assert all(k.split(".")[0] in {"model", "optim", "rng", "state"} for k in keys)
    assert meta["format"] == "preimage-checkpoint" and meta["format_version"] == "1"
    assert meta["model_class"] == "firevnet"
    assert read_checkpoint_metadata(path)["optimizer_class"] == "Adamax"


def test_tied_weights_and_extra_state_round_trip(tmp_path: Path) -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(3, 3, bias=False)
            self.b = nn.Linear(3, 3, bias=False)
            self.b.weight = self.a.weight
            self.note = {"calls": 0}

        def get_extra_state(self) -> Any:
            return self.note

        def set_extra_state(self, state: Any) -> None:
            self.note = state

    src = Tied()
    src.note = {"calls": 5}
    path = save_checkpoint(tmp_path / "t.safetensors", model=src)
    dst = Tied()
    load_checkpoint(path, model=dst)
    assert torch.equal(dst.a.weight, src.a.weight) and dst.a.weight is dst.b.weight
    assert dst.note == {"calls": 5}


def test_map_location_moves_state_tensors(saved: Path, tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "m.safetensors", model=Net(), state={"w": torch.ones(2)})
    state = load_checkpoint(path, model=Net(), map_location="cpu")
    assert state["w"].device == torch.device("cpu")


def one_line(info: pytest.ExceptionInfo[CheckpointError]) -> str:
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint at") as info:
        load_checkpoint(tmp_path / "nope.safetensors", model=Net())
    one_line(info)


@pytest.mark.parametrize("keep", [0, 5, 8, 40, -100, -1])
def test_truncated_file(saved: Path, keep: int) -> None:
    data = saved.read_bytes()
    saved.write_bytes(data[:keep])
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(saved, model=Net())
    assert "truncated" in one_line(info) or "corrupted" in one_line(info)


def test_garbage_bytes(tmp_path: Path) -> None:
    path = tmp_path / "g.safetensors"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, model=Net())
    one_line(info)


def test_flipped_byte_in_tensor_data_is_detected(saved: Path) -> None:
    data = bytearray(saved.read_bytes())
    data[-3] ^= 0x10
    saved.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_checkpoint(saved, model=Net())


def test_edited_metadata_is_detected(saved: Path) -> None:
    data = saved.read_bytes()
    assert data.count(b'{\\"epoch\\":3}') == 1
    saved.write_bytes(data.replace(b'{\\"epoch\\":3}', b'{\\"epoch\\":4}'))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_checkpoint(saved, model=Net())


def test_foreign_safetensors_file(tmp_path: Path) -> None:
    path = tmp_path / "foreign.safetensors"
    safetensors.torch.save_file({"fc.weight": torch.zeros(5, 4)}, str(path))
    with pytest.raises(CheckpointError, match="not a preimage checkpoint") as info:
        load_checkpoint(path, model=Net())
    one_line(info)


def test_wrong_model_class(saved: Path) -> None:
    with pytest.raises(CheckpointError, match="holds a 'Net' model, expected 'iresnet'"):
        load_checkpoint(saved, model=Net(), expected_model_class="iresnet")


def test_missing_unexpected_and_mismatched_keys(saved: Path) -> None:
    with pytest.raises(CheckpointError, match=r"shape mismatch \[fc.weight \(5, 4\) vs \(6, 4\)"):
        load_checkpoint(saved, model=Net(hidden=6))

    class Bigger(Net):
        def __init__(self) -> None:
            super().__init__()
            self.extra = nn.Linear(2, 2)

    with pytest.raises(CheckpointError, match=r"missing keys \[extra.weight, extra.bias\]"):
        load_checkpoint(saved, model=Bigger())
    with pytest.raises(
        CheckpointError, match=r"missing keys \[weight, bias\] \(2\); unexpected keys \[bn.bias"
    ):
        load_checkpoint(saved, model=nn.Linear(4, 3))


def test_optimizer_and_scheduler_mismatches(tmp_path: Path, saved: Path) -> None:
    bare = save_checkpoint(tmp_path / "bare.safetensors", model=Net())
    model = Net()
    with pytest.raises(CheckpointError, match="holds no optimizer state"):
        load_checkpoint(bare, model=model, optimizer=torch.optim.Adamax(model.parameters()))
    with pytest.raises(CheckpointError, match="optimizer state of Adamax, not of Adam"):
        load_checkpoint(saved, model=model, optimizer=torch.optim.Adam(model.parameters()))
    with pytest.raises(CheckpointError, match="does not fit"):
        load_checkpoint(
            saved, model=model, optimizer=torch.optim.Adamax(list(model.parameters())[:2])
        )
    opt = torch.optim.Adamax(model.parameters())
    with pytest.raises(CheckpointError, match="scheduler state of StepLR, not of ExponentialLR"):
        load_checkpoint(
            saved, model=model, scheduler=torch.optim.lr_scheduler.ExponentialLR(opt, 0.9)
        )


def test_unstorable_state_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="cannot store a object"):
        save_checkpoint(tmp_path / "x.safetensors", model=Net(), state={"bad": object()})
    with pytest.raises(CheckpointError, match="state keys must be strings"):
        save_checkpoint(tmp_path / "x.safetensors", model=Net(), state={1: 2})
    with pytest.raises(CheckpointError, match="cannot store dict key"):
        save_checkpoint(tmp_path / "x.safetensors", model=Net(), state={"d": {(1, 2): 3}})
    assert not (tmp_path / "x.safetensors").exists()


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_failed_write_keeps_previous_checkpoint(
    saved: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    before = saved.read_bytes()

    def boom(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt.os, failing, boom)
    model, opt, sched = trained(seed=1)
    with pytest.raises(CheckpointError, match=r"cannot write checkpoint .* No space left"):
        save_checkpoint(saved, model=model, optimizer=opt, scheduler=sched, state={"epoch": 9})
    monkeypatch.undo()
    assert saved.read_bytes() == before
    assert sorted(p.name for p in saved.parent.iterdir()) == [saved.name]
    assert load_checkpoint(saved, model=Net()) == {"epoch": 3}


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    path = atomic_write_bytes(tmp_path / "f.bin", b"x" * 1000)
    atomic_write_bytes(path, b"short")
    assert path.read_bytes() == b"short"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_latest_checkpoint(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path / "missing") is None
    assert latest_checkpoint(tmp_path) is None
    for i, name in enumerate(["epoch-2.safetensors", "epoch-10.safetensors", "last.safetensors"]):
        (tmp_path / name).write_bytes(b"")
        os.utime(tmp_path / name, ns=(10**18 + i, 10**18 + [5, 9, 1][i]))
    (tmp_path / ".last.safetensors.1.ab.tmp").write_bytes(b"")
    (tmp_path / "notes.txt").write_bytes(b"")
    assert latest_checkpoint(tmp_path) == tmp_path / "epoch-10.safetensors"
