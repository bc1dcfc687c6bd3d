from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import os
import platform
from pathlib import Path

import numpy as np
import pytest
import torch

import preimage
from preimage.errors import ConfigError, DataError
from preimage.runs import RunDir, atomic_write_bytes, atomic_write_text, to_jsonable


def _strict_loads(text: str) -> object:
    def refuse(token: str) -> object:
        raise AssertionError(f"non-standard JSON constant {token}")

    return json.loads(text, parse_constant=refuse)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@dataclasses.dataclass
class _Inner:
    width: int = 8
    path: Path = Path("data/mnist")


@dataclasses.dataclass
class _Config:
    lr: float = 1e-3
    shape: tuple[int, ...] = (1, 28, 28)
    inner: _Inner = dataclasses.field(default_factory=_Inner)


class _Mode(enum.Enum):
    FAST = "fast"


def test_creates_folders_when_written_and_keeps_existing_content(tmp_path: Path) -> None:
    root = tmp_path / "a" / "b"
    root.mkdir(parents=True)
    (root / "keep.txt").write_text("old")
    run = RunDir(root)
    assert run.path == root
    # Nothing is created before something is written (a refused run leaves no empty folders).
    assert not run.checkpoints.exists() and not run.figures.exists()
    assert run.checkpoint_path("x").parent == root / "checkpoints" and run.checkpoints.is_dir()
    assert run.figure_path("x").parent == root / "figures" and run.figures.is_dir()
    assert (root / "keep.txt").read_text() == "old"
    RunDir(root)
    assert (root / "keep.txt").read_text() == "old"
    assert os.fspath(run) == str(root)


def test_refuses_a_file(tmp_path: Path) -> None:
    target = tmp_path / "run"
    target.write_text("I am a file")
    with pytest.raises(ConfigError, match="not a folder"):
        RunDir(target)
    assert target.read_text() == "I am a file"
    other = tmp_path / "run2"
    other.mkdir()
    (other / "figures").write_text("x")
    with pytest.raises(ConfigError):
        RunDir(other)


def test_file_name_helpers(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    assert run.figure_path("curves") == tmp_path / "figures" / "curves.png"
    assert run.figure_path("curves.png") == tmp_path / "figures" / "curves.png"
    assert run.checkpoint_path("ep-3") == tmp_path / "checkpoints" / "ep-3.safetensors"
    for bad in ("../evil", "a/b", "", ".hidden"):
        with pytest.raises(ConfigError):
            run.figure_path(bad)


def test_config_round_trip_with_provenance(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    run.write_config(_Config(), argv=["train", "--lr", "1e-3"], seed=7, command="train")
    after = dt.datetime.now(dt.timezone.utc)
    stored = _strict_loads(run.config_path.read_text("utf-8"))
    assert stored == run.read_config()
    assert stored["config"] == {
        "lr": 0.001,
        "shape": [1, 28, 28],
        "inner": {"width": 8, "path": "data/mnist"},
    }
    assert stored["argv"] == ["train", "--lr", "1e-3"]
    assert stored["seed"] == 7
    assert stored["command"] == "train"
    created = dt.datetime.fromisoformat(stored["created"])
    assert created.utcoffset() == dt.timedelta(0)
    assert before <= created <= after
    versions = stored["versions"]
    assert versions["python"] == platform.python_version()
    assert versions["torch"] == torch.__version__
    assert versions["numpy"] == np.__version__
    assert versions["preimage"] == preimage.__version__
    assert versions["cpu_count"] == os.cpu_count()
    assert versions["platform"] == platform.platform()
    assert versions["cuda"]["available"] is torch.cuda.is_available()
    if not torch.cuda.is_available():
        assert versions["cuda"]["device_name"] is None


def test_config_defaults_and_missing(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    with pytest.raises(DataError, match="not a run directory"):
        run.read_config()
    run.write_config({"a": 1})
    stored = run.read_config()
    assert stored["argv"] is None and stored["seed"] is None and stored["command"] is None


def test_metrics_merge_and_nan_as_null(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    assert run.read_metrics() == {}
    assert run.write_metrics({"a": 1, "b": 2.5, "nested": {"x": 1}}) == {
        "a": 1,
        "b": 2.5,
        "nested": {"x": 1},
    }
    merged = run.write_metrics({"b": 3, "c": float("nan"), "d": float("-inf")})
    expected = {"a": 1, "b": 3, "nested": {"x": 1}, "c": None, "d": None}
    assert merged == expected
    text = run.metrics_path.read_text("utf-8")
    assert "NaN" not in text and "Infinity" not in text
    assert _strict_loads(text) == expected
    assert run.read_metrics() == expected


def test_metrics_convert_numpy_and_torch_scalars(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.write_metrics(
        {
            "f32": np.float32(0.5),
            "i64": np.int64(3),
            "flag": np.bool_(True),
            "t": torch.tensor(2.5, requires_grad=True) * 1,
            "vec": torch.tensor([1, 2]),
            "arr": np.array([[0.25, np.nan]]),
        }
    )
    got = run.read_metrics()
    assert got == {
        "f32": 0.5,
        "i64": 3,
        "flag": True,
        "t": 2.5,
        "vec": [1, 2],
        "arr": [[0.25, None]],
    }
    assert type(got["i64"]) is int and type(got["flag"]) is bool and type(got["f32"]) is float


def test_unjsonable_metrics_leave_old_file_intact(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.write_metrics({"accuracy": 0.9})
    before = run.metrics_path.read_bytes()
    with pytest.raises(ConfigError, match="object"):
        run.write_metrics({"bad": object()})
    assert run.metrics_path.read_bytes() == before
    assert _leftovers(tmp_path) == []


def test_failed_replace_leaves_old_file_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = RunDir(tmp_path)
    run.write_metrics({"accuracy": 0.9})
    before = run.metrics_path.read_bytes()

    def interrupted(src: object, dst: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run.write_metrics({"accuracy": 0.1})
    monkeypatch.undo()
    assert run.metrics_path.read_bytes() == before
    assert _leftovers(tmp_path) == []
    assert run.write_metrics({"accuracy": 0.1}) == {"accuracy": 0.1}


def test_corrupt_metrics_are_reported_not_replaced(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.metrics_path.write_text("{broken")
    with pytest.raises(DataError, match="not valid JSON"):
        run.read_metrics()
    with pytest.raises(DataError):
        run.write_metrics({"a": 1})
    assert run.metrics_path.read_text() == "{broken"
    run.metrics_path.write_text("[1, 2]")
    with pytest.raises(DataError, match="JSON object"):
        run.read_metrics()
    with pytest.raises(ConfigError):
        run.write_metrics([("a", 1)])  # type: ignore[arg-type]


def test_atomic_write_mode_and_content(tmp_path: Path) -> None:
    reference = tmp_path / "reference.txt"
    reference.write_text("x")
    written = atomic_write_text(tmp_path / "atomic.txt", "ünïcode")
    assert written.read_bytes() == "ünïcode".encode()
    assert written.stat().st_mode == reference.stat().st_mode
    atomic_write_bytes(written, b"second")
    assert written.read_bytes() == b"second"
    with pytest.raises(ConfigError, match="folder"):
        atomic_write_bytes(tmp_path, b"x")
    assert _leftovers(tmp_path) == []


def test_to_jsonable_types() -> None:
    when = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    converted = to_jsonable(
        {
            "tuple": (1, (2, 3)),
            "set": {3, 1, 2},
            "enum": _Mode.FAST,
            "when": when,
            "dtype": torch.float64,
            "device": torch.device("cpu"),
            1: "int key",
            "inf": float("inf"),
            "np_nan": np.float64("nan"),
            "half": torch.tensor(0.5, dtype=torch.bfloat16),
            "none": None,
        }
    )
    assert converted == {
        "tuple": [1, [2, 3]],
        "set": [1, 2, 3],
        "enum": "fast",
        "when": "2024-01-02T03:04:05+00:00",
        "dtype": "torch.float64",
        "device": "cpu",
        "1": "int key",
        "inf": None,
        "np_nan": None,
        "half": 0.5,
        "none": None,
    }
    json.dumps(converted, allow_nan=False)


def test_to_jsonable_refuses() -> None:
    with pytest.raises(ConfigError, match="too large"):
        to_jsonable(np.zeros(11), max_array_size=10)
    assert to_jsonable(np.zeros(10), max_array_size=10) == [0.0] * 10
    with pytest.raises(ConfigError, match="complex"):
        to_jsonable(1 + 2j)
    with pytest.raises(ConfigError, match="complex"):
        to_jsonable(torch.zeros(2, dtype=torch.complex64))
    with pytest.raises(ConfigError, match="both become"):
        to_jsonable({1: "a", "1": "b"})
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(ConfigError, match="self-referencing"):
        to_jsonable(loop)
    with pytest.raises(ConfigError):
        to_jsonable({(1, 2): 3})
    with pytest.raises(ConfigError):
        to_jsonable(b"raw")
    shared = [1]
    assert to_jsonable({"a": shared, "b": shared}) == {"a": [1], "b": [1]}
