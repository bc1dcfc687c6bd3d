from __future__ import annotations

from pathlib import Path

import pytest

from preimage.data.paths import DATA_ENV_VAR, data_root, dataset_dir


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(DATA_ENV_VAR, raising=False)
    return tmp_path / "home"


def test_default_is_user_cache(home: Path) -> None:
    assert data_root() == home / ".cache" / "preimage"
    assert not (home / ".cache").exists()  # resolving creates nothing


def test_env_overrides_default(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_ENV_VAR, "/srv/datasets")
    assert data_root() == Path("/srv/datasets")
    monkeypatch.setenv(DATA_ENV_VAR, "")
    assert data_root() == home / ".cache" / "preimage"


def test_explicit_overrides_env(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_ENV_VAR, "/srv/datasets")
    assert data_root("/mnt/x") == Path("/mnt/x")
    assert data_root(Path("rel/dir")) == Path("rel/dir")
    assert data_root("~/data") == home / "data"


def test_env_expands_user(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_ENV_VAR, "~/d")
    assert data_root() == home / "d"


def test_dataset_dir_rules(tmp_path: Path) -> None:
    # 4. nothing there yet: where a download would go
    assert dataset_dir("mnist", tmp_path) == tmp_path / "mnist"
    # 3. the dataset folder itself, even before it exists
    assert dataset_dir("mnist", tmp_path / "mnist") == tmp_path / "mnist"
    # 2. a data root with the dataset folder inside
    (tmp_path / "root" / "mnist").mkdir(parents=True)
    assert dataset_dir("mnist", tmp_path / "root") == tmp_path / "root" / "mnist"
    # 1. a folder of any name that holds the dataset's files
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "a.gz").write_bytes(b"x")
    assert dataset_dir("mnist", tmp_path / "copy", files=["a.gz"]) == tmp_path / "copy"
    assert dataset_dir("mnist", tmp_path / "copy", files=["b.gz"]) == tmp_path / "copy" / "mnist"


def test_dataset_dir_uses_data_root(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert dataset_dir("spheres") == home / ".cache" / "preimage" / "spheres"
    monkeypatch.setenv(DATA_ENV_VAR, "/srv/datasets")
    assert dataset_dir("mnist") == Path("/srv/datasets/mnist")
