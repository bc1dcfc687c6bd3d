from __future__ import annotations

import importlib.util
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

from preimage.data.textures import (
    DEFAULT_TEXTURES,
    SKIMAGE_TEXTURES,
    TextureBank,
    load_dtd_textures,
    load_skimage_textures,
    load_textures,
)
from preimage.errors import ConfigError, DataError, ShapeError

needs_skimage = pytest.mark.skipif(
    importlib.util.find_spec("skimage") is None, reason="scikit-image is not installed"
)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any attempt to open a connection, and any call of skimage.data's fetchers."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    fetchers = pytest.importorskip("skimage.data._fetchers")
    if hasattr(fetchers, "_fetch"):
        monkeypatch.setattr(fetchers, "_fetch", refuse)


def _write_dtd(root: Path, categories: int, per_category: int, size: tuple[int, int]) -> Path:
    rng = np.random.default_rng(0)
    for k in range(categories):
        folder = root / "images" / f"cat{k:02d}"
        folder.mkdir(parents=True)
        for j in range(per_category):
            pixels = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
            suffix = ".png" if j % 2 == 0 else ".jpg"
            Image.fromarray(pixels).save(folder / f"cat{k:02d}_{j:04d}{suffix}")
    (root / "images" / "cat00" / "readme.txt").write_text("not an image")
    return root


def _contains(source: np.ndarray, patch: np.ndarray) -> bool:
    windows = sliding_window_view(source, patch.shape)
    return bool((windows == patch).all(axis=(2, 3)).any())


# ---------------------------------------------------------------------------------------------
# scikit-image bank


@needs_skimage
def test_at_least_ten_distinct_offline_sources(no_network: None) -> None:
    assert len(DEFAULT_TEXTURES) == 10 and len(set(DEFAULT_TEXTURES)) == 10
    assert len(SKIMAGE_TEXTURES) >= 10
    bank = load_skimage_textures(tuple(SKIMAGE_TEXTURES), size=48)
    images = [images[0] for images in bank.sources]
    for name, image in zip(bank.names, images, strict=True):
        assert image.dtype == torch.float32 and image.ndim == 2
        assert min(image.shape) == 48, name
        assert float(image.min()) == 0.0 and float(image.max()) == 1.0
    for i in range(len(images)):
        for j in range(i + 1, len(images)):
            a, b = images[i], images[j]
            same_shape = a.shape == b.shape
            assert not (same_shape and torch.allclose(a, b, atol=0.05)), (i, j)


@needs_skimage
def test_resize_keeps_aspect_ratio(no_network: None) -> None:
    bank = load_skimage_textures(("page", "brick"), size=64)
    page, brick = bank.sources[0][0], bank.sources[1][0]
    # page.png is 384 x 191 (width x height), brick.png 512 x 512.
    assert tuple(page.shape) == (64, round(384 * 64 / 191))
    assert tuple(brick.shape) == (64, 64)


@needs_skimage
def test_default_bank_order(no_network: None) -> None:
    bank = load_textures(size=32)
    assert bank.names == DEFAULT_TEXTURES and bank.num_classes == 10
    more = load_textures(num_classes=12, size=32)
    assert more.names[:10] == DEFAULT_TEXTURES and len(set(more.names)) == 12


def test_missing_scikit_image_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "skimage", None)
    with pytest.raises(DataError, match=r"pip install preimage\[textures\]"):
        load_skimage_textures(("brick",))
    with pytest.raises(DataError, match="texture_dir"):
        load_textures()


def test_bad_names_and_sizes() -> None:
    with pytest.raises(ConfigError, match="unknown"):
        load_skimage_textures(("brick", "lava"))
    with pytest.raises(ConfigError, match="distinct"):
        load_skimage_textures(("brick", "brick"))
    with pytest.raises(ConfigError, match="size"):
        load_skimage_textures(("brick",), size=0)
    with pytest.raises(ConfigError, match="cannot code"):
        load_textures(num_classes=len(SKIMAGE_TEXTURES) + 1)


# ---------------------------------------------------------------------------------------------
# DTD folders


def test_dtd_folder(tmp_path: Path) -> None:
    root = _write_dtd(tmp_path / "dtd", categories=12, per_category=3, size=(40, 50))
    bank = load_dtd_textures(root, num_classes=10, seed=3, size=32)
    assert bank.num_classes == 10 and len(set(bank.names)) == 10
    assert set(bank.names) <= {f"cat{k:02d}" for k in range(12)}
    assert all(len(images) == 3 for images in bank.sources)
    assert all(tuple(s.shape) == (32, 40) for images in bank.sources for s in images)
    # Seeded: the same seed gives the same categories in the same order; others differ.
    again = load_dtd_textures(root / "images", num_classes=10, seed=3, size=32)
    assert again.names == bank.names
    assert all(
        torch.equal(a, b)
        for x, y in zip(bank.sources, again.sources, strict=True)
        for a, b in zip(x, y, strict=True)
    )
    others = {load_dtd_textures(root, num_classes=10, seed=s, size=32).names for s in range(6)}
    assert len(others) > 1
    limited = load_dtd_textures(root, categories=("cat05",), size=32, max_images_per_category=2)
    assert limited.names == ("cat05",) and len(limited.sources[0]) == 2


def test_dtd_grey_conversion_matches_luma(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, size=(30, 30, 3), dtype=np.uint8)
    rgb[0, 0] = 0
    rgb[0, 1] = 255
    folder = tmp_path / "images" / "noise"
    folder.mkdir(parents=True)
    Image.fromarray(rgb).save(folder / "a.png")
    bank = load_dtd_textures(tmp_path, categories=("noise",), size=30)
    luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    expected = (luma - luma.min()) / (luma.max() - luma.min())
    np.testing.assert_allclose(bank.sources[0][0].numpy(), expected, atol=1.0 / 255)


def test_dtd_errors(tmp_path: Path) -> None:
    root = _write_dtd(tmp_path / "dtd", categories=3, per_category=1, size=(30, 30))
    with pytest.raises(DataError, match="3 texture categories, 10 are needed"):
        load_dtd_textures(root)
    with pytest.raises(DataError, match="not found"):
        load_dtd_textures(root, categories=("cat00", "lava"))
    with pytest.raises(DataError, match="does not exist"):
        load_dtd_textures(tmp_path / "nowhere")
    (root / "images" / "empty").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        load_dtd_textures(root, categories=("empty",))
    (root / "images" / "broken").mkdir()
    (root / "images" / "broken" / "x.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="cannot read"):
        load_dtd_textures(root, categories=("broken",))
    flat = root / "images" / "flat"
    flat.mkdir()
    Image.fromarray(np.full((30, 30), 7, dtype=np.uint8)).save(flat / "f.png")
    with pytest.raises(DataError, match="constant"):
        load_dtd_textures(root, categories=("flat",))
    with pytest.raises(ConfigError, match="distinct"):
        load_dtd_textures(root, categories=("cat00", "cat00"))
    assert load_textures(root, num_classes=2, size=16).num_classes == 2


# ---------------------------------------------------------------------------------------------
# TextureBank.sample


def _noise_bank(seed: int = 0) -> TextureBank:
    gen = torch.Generator().manual_seed(seed)
    sources = (
        (torch.rand(30, 31, generator=gen),),
        (torch.rand(29, 40, generator=gen), torch.rand(35, 28, generator=gen)),
    )
    return TextureBank(("a", "b"), sources)


def test_patches_are_crops_of_their_own_type() -> None:
    bank = _noise_bank()
    classes = torch.tensor([0, 1] * 150)
    patches = bank.sample(classes, (28, 28), np.random.default_rng(5))
    assert patches.shape == (300, 1, 28, 28) and patches.dtype == torch.float32
    sources = [[s.numpy() for s in images] for images in bank.sources]
    corners: set[tuple[int, int]] = set()
    used_b: set[int] = set()
    for patch, k in zip(patches[:, 0].numpy(), classes.tolist(), strict=True):
        hits = [j for j, s in enumerate(sources[k]) if _contains(s, patch)]
        assert len(hits) == 1
        assert not any(_contains(s, patch) for s in sources[1 - k])
        if k == 0:
            windows = sliding_window_view(sources[0][0], (28, 28))
            top, left = np.argwhere((windows == patch).all(axis=(2, 3)))[0]
            corners.add((int(top), int(left)))
        else:
            used_b.add(hits[0])
    # Every one of the 3 x 4 positions of a 28x28 patch in the 30x31 source is reachable.
    assert corners == {(t, w) for t in range(3) for w in range(4)}
    assert used_b == {0, 1}


def test_sampling_is_seeded() -> None:
    bank = _noise_bank()
    classes = torch.tensor([1, 0, 1, 1, 0])
    a = bank.sample(classes, (20, 20), np.random.default_rng(7))
    b = bank.sample(classes, (20, 20), np.random.default_rng(7))
    c = bank.sample(classes, (20, 20), np.random.default_rng(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_bank_validation() -> None:
    bank = _noise_bank()
    with pytest.raises(ShapeError, match="do not fit"):
        bank.sample(torch.tensor([0]), (30, 30), np.random.default_rng(0))
    with pytest.raises(ConfigError, match="must lie in"):
        bank.sample(torch.tensor([2]), (8, 8), np.random.default_rng(0))
    with pytest.raises(ShapeError, match="1-D"):
        bank.sample(torch.zeros(2, 2, dtype=torch.int64), (8, 8), np.random.default_rng(0))
    with pytest.raises(ConfigError, match="one name per"):
        TextureBank(("a",), ())
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        TextureBank(("a",), ((torch.full((4, 4), 2.0),),))
    with pytest.raises(ShapeError, match="float32"):
        TextureBank(("a",), ((torch.zeros(4, 4, dtype=torch.float64),),))
    with pytest.raises(DataError, match="no source images"):
        TextureBank(("a",), ((),))
