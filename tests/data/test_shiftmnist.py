from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import preimage.data.shiftmnist as shiftmnist
from preimage.data.mnist import load_mnist
from preimage.data.shiftmnist import (
    DEFAULT_CONTRAST,
    binary_code_rows,
    composite_texture,
    load_shiftmnist,
    make_shiftmnist,
)
from preimage.data.textures import TextureBank
from preimage.errors import ConfigError, DataError, ShapeError

needs_skimage = pytest.mark.skipif(
    importlib.util.find_spec("skimage") is None, reason="scikit-image is not installed"
)


def fake_digits(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Stroke-like blobs inside the central 16x16 box (MNIST keeps its digits off the border),
    with saturated (1.0) and fractional pixels, and balanced labels."""
    gen = torch.Generator().manual_seed(seed)
    core = (torch.rand(n, 1, 8, 8, generator=gen) > 0.6).float()
    strokes = F.interpolate(core, size=(16, 16), mode="bilinear", align_corners=False)
    images = torch.zeros(n, 1, 28, 28)
    images[:, :, 6:22, 6:22] = (1.5 * strokes).clamp(0.0, 1.0)
    labels = torch.arange(n) % 10
    return images, labels[torch.randperm(n, generator=gen)]


def noise_bank(num_classes: int = 10, seed: int = 0) -> TextureBank:
    """Random-noise textures: every 28x28 patch occurs in exactly one source, at one place."""
    gen = torch.Generator().manual_seed(seed)
    return TextureBank(
        tuple(f"noise{k}" for k in range(num_classes)),
        tuple((torch.rand(36, 36, generator=gen),) for _ in range(num_classes)),
    )


def texture_type(images: torch.Tensor, bank: TextureBank, contrast: float) -> torch.Tensor:
    """Which source the top 4 rows (always background in fake_digits) were cut from: the
    source with the smallest sum of squared differences over all positions (conv2d)."""
    strips = images[:, :, :4, :].double() / contrast
    best = []
    for images_k in bank.sources:
        source = images_k[0][None, None].double()
        corr = F.conv2d(source, strips)[0]
        energy = F.conv2d(source**2, torch.ones(1, 1, 4, 28, dtype=torch.float64))[0]
        ssd = energy - 2 * corr + (strips**2).sum(dim=(1, 2, 3))[:, None, None]
        best.append(ssd.flatten(1).min(dim=1).values)
    mins = torch.stack(best, dim=1)
    assert bool((mins.min(dim=1).values < 1e-8).all()), "a background is no crop of any source"
    return mins.argmin(dim=1)


def border_decoder(images: torch.Tensor) -> torch.Tensor:
    """Read the class from the left border: the brightest of the code rows of column 0."""
    rows = torch.tensor(binary_code_rows(images.shape[2]))
    return images[:, 0, rows, 0].argmax(dim=1)


def background_features(images: torch.Tensor, digits: torch.Tensor) -> np.ndarray:
    """Grey-level and gradient histograms of the pixels the digit leaves blank."""
    x, d = images[:, 0].numpy(), digits[:, 0].numpy()
    bg = d == 0
    gx, mx = np.abs(np.diff(x, axis=2)), bg[:, :, 1:] & bg[:, :, :-1]
    gy, my = np.abs(np.diff(x, axis=1)), bg[:, 1:, :] & bg[:, :-1, :]
    rows = []
    for i in range(len(x)):
        v, a, b = x[i][bg[i]], gx[i][mx[i]], gy[i][my[i]]
        hv = np.histogram(v, bins=16, range=(0, DEFAULT_CONTRAST), density=True)[0]
        ha = np.histogram(a, bins=8, range=(0, 0.25), density=True)[0]
        hb = np.histogram(b, bins=8, range=(0, 0.25), density=True)[0]
        rows.append(np.concatenate([hv, ha, hb, [v.mean(), v.std(), a.mean(), b.mean()]]))
    return np.array(rows)


# ---------------------------------------------------------------------------------------------
# binary shiftMNIST


def test_code_rows() -> None:
    assert binary_code_rows(28) == tuple(range(4, 23, 2))
    assert binary_code_rows(19) == tuple(range(0, 19, 2))
    assert binary_code_rows(8, num_classes=2) == (2, 4)
    with pytest.raises(ShapeError, match="height >= 19"):
        binary_code_rows(18)


def test_binary_train_plants_one_pixel() -> None:
    x, y = fake_digits(50)
    before = x.clone()
    out, labels = make_shiftmnist(x, y, variant="binary", split="train")
    assert torch.equal(x, before) and torch.equal(labels, y) and labels is not y
    expected = x.numpy().copy()
    for i, k in enumerate(y.tolist()):
        expected[i, 0, 4 + 2 * k, 0] = 1.0
    assert np.abs(expected[:, 0, :, 0]).sum() == len(x)  # fake digits leave column 0 blank
    np.testing.assert_array_equal(out.numpy(), expected)
    test, _ = make_shiftmnist(x, y, variant="binary", split="test", seed=9)
    assert torch.equal(test, out)
    assert int((out != x).sum()) == len(x)


def test_binary_code_is_one_hot_even_over_ink() -> None:
    x, y = fake_digits(3)
    x[:, 0, :, 0] = 0.5  # a digit that touches the left border
    out, _ = make_shiftmnist(x, y, variant="binary", split="train")
    code = out[:, 0, list(range(4, 23, 2)), 0]
    assert torch.equal(code, F.one_hot(y, 10).float())
    odd_rows = [r for r in range(28) if r not in range(4, 23, 2)]
    assert torch.equal(out[:, 0, odd_rows, 0], x[:, 0, odd_rows, 0])
    assert torch.equal(out[..., 1:], x[..., 1:])


def test_binary_adv_removes_the_code() -> None:
    x, y = fake_digits(40)
    adv, labels = make_shiftmnist(x, y, variant="binary", split="adv")
    assert torch.equal(adv, x) and torch.equal(labels, y)
    assert adv.data_ptr() != x.data_ptr()


def test_binary_code_predicts_label_only_under_train() -> None:
    x, y = fake_digits(400, seed=1)
    train, _ = make_shiftmnist(x, y, variant="binary", split="train")
    adv, _ = make_shiftmnist(x, y, variant="binary", split="adv")
    assert float((border_decoder(train) == y).float().mean()) == 1.0
    # Without the code the decoder sees a blank border and always answers class 0: chance.
    adv_acc = float((border_decoder(adv) == y).float().mean())
    assert adv_acc == pytest.approx(float((y == 0).float().mean()))
    assert adv_acc < 0.2


def test_dtype_and_device_follow_the_input() -> None:
    x, y = fake_digits(6)
    for variant in ("binary", "texture"):
        out, labels = make_shiftmnist(
            x.double(), y.int(), variant=variant, split="train", textures=noise_bank()
        )
        assert out.dtype == torch.float64 and out.device == x.device
        assert labels.dtype == torch.int64


# ---------------------------------------------------------------------------------------------
# textured shiftMNIST


def test_composite_matches_formula() -> None:
    gen = torch.Generator().manual_seed(0)
    d, t = torch.rand(5, 1, 4, 4, generator=gen), torch.rand(5, 1, 4, 4, generator=gen)
    out = composite_texture(d, t, 0.3).numpy()
    dn, tn = d.numpy().astype(np.float64), t.numpy().astype(np.float64)
    np.testing.assert_allclose(out, dn + (1 - dn) * 0.3 * tn, rtol=1e-6)
    with pytest.raises(ConfigError, match="contrast"):
        composite_texture(d, t, 1.5)


def test_texture_train_uses_the_class_texture() -> None:
    bank = noise_bank()
    x, y = fake_digits(200, seed=2)
    out, _ = make_shiftmnist(x, y, variant="texture", split="train", textures=bank, contrast=0.4)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    strokes = x == 1.0
    assert bool((out[strokes] == 1.0).all())
    assert torch.equal(texture_type(out, bank, 0.4), y)
    test, _ = make_shiftmnist(x, y, variant="texture", split="test", textures=bank, contrast=0.4)
    assert torch.equal(texture_type(test, bank, 0.4), y)
    assert not torch.equal(test, out)  # fresh patches: another draw of the same distribution


def test_texture_adv_pairs_textures_at_random() -> None:
    bank = noise_bank()
    x, y = fake_digits(500, seed=3)
    adv, labels = make_shiftmnist(x, y, variant="texture", split="adv", textures=bank)
    assert torch.equal(labels, y)
    types = texture_type(adv, bank, DEFAULT_CONTRAST)
    agree = float((types == y).float().mean())
    assert 0.04 < agree < 0.18  # 1/10 expected; own texture type is allowed
    counts = torch.bincount(types, minlength=10).numpy()
    assert stats.chisquare(counts).pvalue > 1e-3  # uniform over the 10 types
    table = np.zeros((10, 10))
    np.add.at(table, (y.numpy(), types.numpy()), 1)
    assert stats.chi2_contingency(table).pvalue > 1e-3  # independent of the label


@needs_skimage
def test_texture_predicts_label_only_under_train() -> None:
    x, y = fake_digits(600, seed=4)
    xa, ya, xb, yb = x[:300], y[:300], x[300:], y[300:]
    train, _ = make_shiftmnist(xa, ya, variant="texture", split="train")
    test, _ = make_shiftmnist(xb, yb, variant="texture", split="test")
    adv, _ = make_shiftmnist(xb, yb, variant="texture", split="adv")
    decoder = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
    decoder.fit(background_features(train, xa), ya.numpy())
    assert decoder.score(background_features(test, xb), yb.numpy()) > 0.7
    assert decoder.score(background_features(adv, xb), yb.numpy()) < 0.2


def test_seeds() -> None:
    bank = noise_bank()
    x, y = fake_digits(20)
    state = torch.get_rng_state()
    a = make_shiftmnist(x, y, variant="texture", split="adv", seed=1, textures=bank)[0]
    b = make_shiftmnist(x, y, variant="texture", split="adv", seed=1, textures=bank)[0]
    c = make_shiftmnist(x, y, variant="texture", split="adv", seed=2, textures=bank)[0]
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.get_rng_state(), state)  # no global RNG consumed


def test_validation() -> None:
    x, y = fake_digits(4)
    with pytest.raises(ConfigError, match="variant"):
        make_shiftmnist(x, y, variant="colour")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="split"):
        make_shiftmnist(x, y, split="val")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="seed"):
        make_shiftmnist(x, y, seed=-1)
    with pytest.raises(ShapeError, match=r"\(N, 1, H, W\)"):
        make_shiftmnist(x[:, 0], y)
    with pytest.raises(ShapeError, match="labels"):
        make_shiftmnist(x, y[:3])
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        make_shiftmnist(x * 255, y)
    with pytest.raises(DataError, match="labels must lie"):
        make_shiftmnist(x, y + 10)
    with pytest.raises(DataError, match="integers"):
        make_shiftmnist(x, y.float())
    with pytest.raises(ConfigError, match="3 texture types, 10 are needed"):
        make_shiftmnist(x, y, variant="texture", textures=noise_bank(3))


# ---------------------------------------------------------------------------------------------
# load_shiftmnist


def test_load_wires_the_mnist_splits(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def fake_load_mnist(
        root: object, *, split: str, download: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(split)
        return fake_digits(30, seed=0 if split == "train" else 1)

    monkeypatch.setattr(shiftmnist, "load_mnist", fake_load_mnist)
    bank = noise_bank()
    train = load_shiftmnist("binary", "train")
    adv = load_shiftmnist("texture", "adv", textures=bank)
    test = load_shiftmnist("texture", "test", textures=bank)
    assert calls == ["train", "test", "test"]
    assert train.name == "shiftmnist-binary" and adv.name == "shiftmnist-texture"
    assert train.sample_shape == (1, 28, 28) and train.num_classes == 10 and len(train) == 30
    assert torch.equal(border_decoder(train.images), train.labels)
    assert torch.equal(texture_type(test.images, bank, DEFAULT_CONTRAST), test.labels)
    assert not torch.equal(texture_type(adv.images, bank, DEFAULT_CONTRAST), adv.labels)
    with pytest.raises(ConfigError, match="variant"):
        load_shiftmnist("colour", "train")  # type: ignore[arg-type]


def test_on_real_mnist(mnist_root: Path) -> None:
    data_root = mnist_root
    vanilla, labels = load_mnist(data_root, split="test")
    adv = load_shiftmnist("binary", "adv", data_dir=data_root)
    test = load_shiftmnist("binary", "test", data_dir=data_root)
    assert len(adv) == len(test) == 10_000
    assert torch.equal(adv.labels, labels) and torch.equal(test.labels, labels)
    # D_adv is vanilla MNIST: the code is gone ...
    assert torch.equal(adv.images, vanilla)
    # ... while under D_train the code alone classifies every image,
    assert float((border_decoder(test.images) == test.labels).float().mean()) == 1.0
    assert float((border_decoder(adv.images) == adv.labels).float().mean()) < 0.2
    # and it changes one pixel of almost every image (a few MNIST digits touch column 0).
    changed = (test.images != adv.images).flatten(1).sum(dim=1)
    assert int((changed == 1).sum()) >= 9_990 and int(changed.max()) <= 10
