r"""Measuring excessive invariance: post-hoc nuisance classifiers and decision planes.

A bijective classifier :math:`z = F(x) = (z_s, z_n)` decides on the logits :math:`z_s` only.
How much label information it leaves in the ignored nuisance :math:`z_n` is measured by
training a fresh classifier on :math:`z_n` of the frozen network (the "Nuisance" read-out of
table 2): low error means the classifier is invariant to class evidence that is still there.
:func:`decision_plane_grid` evaluates any classifier on a 2-D plane through two inputs (the
planes of figure 4, following Gilmer et al. 2018).

Deviations, and why: the post-hoc nuisance classifier sees :math:`z_n` standardised with the
training set's per-coordinate mean and standard deviation (a fixed affine map in front of the
MLP). A cross-entropy-trained network leaves :math:`z_n` on arbitrary scales, and an
unnormalised MLP input would measure the optimiser's trouble with scale rather than the
information in :math:`z_n`; the affine map does not change which labels are decodable.

References:
    Jacobsen, Behrmann, Zemel, Bethge (2019), *Excessive Invariance Causes Adversarial
    Vulnerability*, section 2.1 ("Attack on adversarial spheres", figure 4), section 4 and
    table 2 (nuisance read-out), appendix D.1 and D.2 (nuisance classifier sizes).
    Gilmer et al. (2018), *Adversarial Spheres* (decision planes through data points).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from typing_extensions import Unpack

from preimage.attacks.base import eval_mode
from preimage.errors import ConfigError, ShapeError
from preimage.losses.nuisance import NuisanceClassifier

__all__ = [
    "NuisanceReadout",
    "PlaneGrid",
    "ProbeOptions",
    "Standardize",
    "classification_error",
    "decision_plane_grid",
    "fit_nuisance_probe",
    "nuisance_features",
    "plane_basis",
    "train_nuisance_classifier",
]


def _device_of(model: nn.Module) -> torch.device:
    ref = next(iter(model.parameters()), None)
    return ref.device if ref is not None else torch.device("cpu")


@torch.no_grad()
def nuisance_features(model: nn.Module, x: Tensor, *, batch_size: int = 512) -> Tensor:
    r"""The nuisance :math:`z_n(x)` of an invertible classifier, shape ``(N, d - C)``.

    Runs in eval mode (training flags restored) in chunks on the model's device.

    Example:
        >>> import torch
        >>> from preimage.models import FiRevNet
        >>> model = FiRevNet((1, 4, 4), 3, stages=1, blocks_per_stage=1, hidden=4)
        >>> nuisance_features(model, torch.rand(5, 1, 4, 4)).shape
        torch.Size([5, 13])
    """
    if not callable(getattr(model, "split", None)):
        raise ConfigError(f"{type(model).__name__} has no split(z); it is no invertible classifier")
    device = _device_of(model)
    parts = []
    with eval_mode(model):
        for chunk in x.split(batch_size):
            z, _ = model(chunk.to(device))
            parts.append(model.split(z)[1])
    return torch.cat(parts)


class Standardize(nn.Module):
    r"""Fixed per-feature affine map :math:`(z - \mu) / \sigma` (statistics stored as buffers).

    Example:
        >>> import torch
        >>> z = torch.tensor([[0.0, 10.0], [2.0, 30.0]])
        >>> Standardize.fit(z)(z).tolist()
        [[-1.0, -1.0], [1.0, 1.0]]
    """

    def __init__(self, mean: Tensor, std: Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.detach().clone())
        self.register_buffer("std", std.detach().clone())

    @classmethod
    def fit(cls, z: Tensor, eps: float = 1e-6) -> Standardize:
        """Statistics of ``z`` (population standard deviation, floored at ``eps``)."""
        return cls(z.mean(dim=0), z.std(dim=0, unbiased=False).clamp_min(eps))

    def forward(self, z: Tensor) -> Tensor:
        return (z - self.mean) / self.std


@torch.no_grad()
def classification_error(
    fn: Callable[[Tensor], Tensor], x: Tensor, y: Tensor, *, batch_size: int = 1024
) -> float:
    r"""Fraction of ``x`` whose argmax of ``fn(x)`` differs from ``y``.

    Example:
        >>> import torch
        >>> classification_error(lambda t: t, torch.eye(3), torch.tensor([0, 1, 0]))
        0.3333333333333333
    """
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ShapeError(f"need as many labels as inputs (> 0), got {x.shape[0]} and {y.shape[0]}")
    wrong = 0
    for xs, ys in zip(x.split(batch_size), y.split(batch_size), strict=True):
        pred = fn(xs).argmax(dim=1)
        wrong += int((pred != ys.to(pred.device)).sum())
    return wrong / x.shape[0]


@dataclass
class NuisanceReadout:
    r"""A classifier trained on :math:`z_n` of a frozen network, with its errors.

    Attributes:
        classifier: ``Standardize -> NuisanceClassifier``, mapping :math:`z_n` to logits.
        train_error: error on the training nuisances.
        test_error: error on the test nuisances.
        losses: mean training cross-entropy per epoch.
        curve: test error after each epoch count that was asked for (``record_epochs``).
    """

    classifier: nn.Module
    train_error: float
    test_error: float
    losses: list[float] = field(default_factory=list)
    curve: dict[int, float] = field(default_factory=dict)

    @torch.no_grad()
    def logits(self, model: nn.Module, x: Tensor) -> Tensor:
        """Nuisance-classifier logits for inputs ``x`` of the network ``model``."""
        with eval_mode(self.classifier):
            return self.classifier(nuisance_features(model, x))


class ProbeOptions(TypedDict, total=False):
    """Options of a nuisance probe; :func:`fit_nuisance_probe` holds their defaults and
    meaning, :func:`train_nuisance_classifier` passes them on."""

    hidden: int
    depth: int
    epochs: int
    lr: float
    batch_size: int
    seed: int
    standardize: bool
    record_epochs: Sequence[int]


def train_nuisance_classifier(
    model: nn.Module,
    train: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor],
    **probe: Unpack[ProbeOptions],
) -> NuisanceReadout:
    r"""Train a fresh nuisance classifier on :math:`z_n` of a frozen ``model``; report errors.

    The network is only evaluated (eval mode, no gradients); its nuisances are computed once
    and handed to :func:`fit_nuisance_probe`.

    Args:
        model: invertible classifier with ``split``.
        train: ``(inputs, labels)`` to train on.
        test: ``(inputs, labels)`` to measure the test error on.
        **probe: ``hidden``, ``depth``, ``epochs``, ``lr``, ``batch_size``, ``seed``,
            ``standardize`` and ``record_epochs``, as in :func:`fit_nuisance_probe`.

    Returns:
        The trained :class:`NuisanceReadout`.

    Example:
        >>> import torch
        >>> from preimage.models import FiRevNet
        >>> model = FiRevNet((6,), 2, stages=1, blocks_per_stage=1, hidden=8, batch_norm=False)
        >>> x = torch.randn(64, 6); y = (x[:, 4] > 0).long()
        >>> out = train_nuisance_classifier(model, (x, y), (x, y), hidden=16, epochs=30)
        >>> out.train_error < 0.3
        True

    References:
        Jacobsen et al. (2019), *Excessive Invariance Causes Adversarial Vulnerability*,
        table 2 ("Nuisance" read-out) and appendix D.2.
    """
    num_classes = int(getattr(model, "num_classes", 0)) or int(train[1].max()) + 1
    z_train = nuisance_features(model, train[0])
    z_test = nuisance_features(model, test[0])
    return fit_nuisance_probe((z_train, train[1]), (z_test, test[1]), num_classes, **probe)


def fit_nuisance_probe(
    train: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor],
    num_classes: int,
    *,
    hidden: int = 512,
    depth: int = 3,
    epochs: int = 10,
    lr: float = 1e-3,
    batch_size: int = 128,
    seed: int = 0,
    standardize: bool = True,
    record_epochs: Sequence[int] = (),
) -> NuisanceReadout:
    r"""Train a fresh nuisance classifier on given codes ``(z_n, y)``; report its errors.

    The classifier (:class:`~preimage.losses.nuisance.NuisanceClassifier`, behind
    :class:`Standardize` fitted to the training codes unless ``standardize=False``) is trained
    with Adam on the cross-entropy in shuffled mini-batches. With ``record_epochs`` the test
    error is also recorded after those epoch counts (a probe-length curve from one run; counts
    above ``epochs`` extend the run).

    Args:
        train: ``(codes, labels)`` to train on, codes ``(N, K)``.
        test: ``(codes, labels)`` to measure the test error on.
        num_classes: number of classes.
        hidden: hidden units (paper: 512 on MNIST, 1000 on spheres).
        depth: linear layers (paper: 3).
        epochs: passes over the training codes.
        lr: Adam learning rate.
        batch_size: mini-batch size.
        seed: seeds initialisation and shuffling.
        standardize: standardise the codes with the training set's statistics first.
        record_epochs: epoch counts after which to record the test error (``curve``).

    Returns:
        The :class:`NuisanceReadout` after ``max(epochs, *record_epochs)`` epochs.

    Example:
        >>> import torch
        >>> z = torch.randn(256, 3); y = (z[:, 0] > 0).long()
        >>> out = fit_nuisance_probe((z, y), (z, y), 2, hidden=16, epochs=5, record_epochs=(1, 5))
        >>> sorted(out.curve), out.test_error == out.curve[5]
        ([1, 5], True)
    """
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    record = sorted({int(e) for e in record_epochs})
    if record and record[0] < 1:
        raise ConfigError(f"record_epochs must be >= 1, got {record_epochs!r}")
    z_train, z_test = train[0], test[0].to(train[0].device)
    if z_train.dim() != 2 or z_test.dim() != 2 or z_train.shape[1] != z_test.shape[1]:
        raise ShapeError(
            f"codes must be (N, K) matrices of one width, got {tuple(z_train.shape)} and "
            f"{tuple(z_test.shape)}"
        )
    device = z_train.device
    y_train, y_test = train[1].to(device), test[1].to(device)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = NuisanceClassifier(z_train.shape[1], num_classes, hidden=hidden, depth=depth)
    front: nn.Module = Standardize.fit(z_train) if standardize else nn.Identity()
    classifier = nn.Sequential(front, head).to(device=device, dtype=z_train.dtype)
    opt = torch.optim.Adam(classifier.parameters(), lr=lr)
    losses: list[float] = []
    curve: dict[int, float] = {}
    for epoch in range(1, max(epochs, *record, 1) + 1):
        classifier.train()
        order = torch.randperm(z_train.shape[0], generator=gen).to(device)
        total = 0.0
        for idx in order.split(batch_size):
            loss = F.cross_entropy(classifier(z_train[idx]), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * idx.numel()
        losses.append(total / z_train.shape[0])
        if epoch in record:
            curve[epoch] = classification_error(classifier, z_test, y_test)
    classifier.eval()
    return NuisanceReadout(
        classifier=classifier,
        train_error=classification_error(classifier, z_train, y_train),
        test_error=classification_error(classifier, z_test, y_test),
        losses=losses,
        curve=curve,
    )


def plane_basis(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    r"""Orthonormal basis :math:`(e_1, e_2)` of :math:`\operatorname{span}\{a, b\}` (Gram-Schmidt).

    :math:`e_1 = a / \|a\|`, :math:`e_2` the normalised part of :math:`b` orthogonal to
    :math:`e_1`. Inputs are single samples of any shape; the basis has their shape.

    Raises:
        ConfigError: ``a`` is zero or ``b`` is parallel to ``a``.

    Example:
        >>> import torch
        >>> e1, e2 = plane_basis(torch.tensor([2.0, 0.0, 0.0]), torch.tensor([1.0, 3.0, 0.0]))
        >>> e1.tolist(), e2.tolist()
        ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0])
    """
    if a.shape != b.shape:
        raise ShapeError(
            f"a and b must have the same shape, got {tuple(a.shape)}, {tuple(b.shape)}"
        )
    fa, fb = a.reshape(-1), b.reshape(-1)
    na = fa.norm()
    if float(na) == 0:
        raise ConfigError("plane_basis needs a non-zero first point")
    e1 = fa / na
    rest = fb - (fb @ e1) * e1
    nr = rest.norm()
    if float(nr) <= 1e-12 * max(float(fb.norm()), 1e-30):
        raise ConfigError("the two points are parallel; they span no plane")
    return e1.reshape(a.shape), (rest / nr).reshape(a.shape)


@dataclass(frozen=True)
class PlaneGrid:
    r"""A classifier's output on a grid of the plane spanned by two inputs.

    Attributes:
        u: ``(n,)`` coordinates along :math:`e_1`.
        v: ``(n,)`` coordinates along :math:`e_2`.
        values: ``(n, n)``; ``values[i, j]`` is the output at :math:`u_j e_1 + v_i e_2`.
        coords_a: plane coordinates of the first point.
        coords_b: plane coordinates of the second point.
    """

    u: Tensor
    v: Tensor
    values: Tensor
    coords_a: tuple[float, float]
    coords_b: tuple[float, float]


@torch.no_grad()
def decision_plane_grid(
    fn: Callable[[Tensor], Tensor],
    a: Tensor,
    b: Tensor,
    *,
    resolution: int = 101,
    extent: float | None = None,
    batch_size: int = 4096,
) -> PlaneGrid:
    r"""Evaluate ``fn`` on the plane :math:`\operatorname{span}\{a, b\}` through the origin.

    Points :math:`u e_1 + v e_2` with :math:`(e_1, e_2)` = :func:`plane_basis` ``(a, b)`` and
    :math:`u, v \in [-\text{extent}, \text{extent}]`; on Adversarial Spheres this plane cuts
    both spheres in circles (figure 4).

    Args:
        fn: maps a batch ``(B, *a.shape)`` to one value per point ``(B,)`` (e.g. the probability
            of class 1).
        a: first point (a single sample).
        b: second point.
        resolution: grid points per axis.
        extent: half-width of the grid (default: 1.25 times the larger norm of the points).
        batch_size: points per call of ``fn``.

    Returns:
        The :class:`PlaneGrid`.

    Example:
        >>> import torch
        >>> g = decision_plane_grid(lambda p: p.norm(dim=1), torch.tensor([3.0, 0.0, 0.0]),
        ...                         torch.tensor([0.0, 0.0, 4.0]), resolution=5, extent=2.0)
        >>> g.values.shape, g.coords_a, g.coords_b
        (torch.Size([5, 5]), (3.0, 0.0), (0.0, 4.0))
        >>> round(float(g.values[0, 0]), 4)  # the corner (-2, -2)
        2.8284
    """
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 2:
        raise ConfigError(f"resolution must be an integer >= 2, got {resolution!r}")
    e1, e2 = plane_basis(a, b)
    coords_a = (float((a * e1).sum()), float((a * e2).sum()))
    coords_b = (float((b * e1).sum()), float((b * e2).sum()))
    if extent is None:
        extent = 1.25 * max(float(a.norm()), float(b.norm()))
    if not extent > 0:
        raise ConfigError(f"extent must be > 0, got {extent!r}")
    axis = torch.linspace(-extent, extent, resolution, dtype=a.dtype, device=a.device)
    vv, uu = torch.meshgrid(axis, axis, indexing="ij")
    flat_e1, flat_e2 = e1.reshape(1, -1), e2.reshape(1, -1)
    points = uu.reshape(-1, 1) * flat_e1 + vv.reshape(-1, 1) * flat_e2
    values = []
    for chunk in points.split(batch_size):
        out = fn(chunk.reshape(-1, *a.shape))
        if out.shape != (chunk.shape[0],):
            raise ShapeError(f"fn must return one value per point, got {tuple(out.shape)}")
        values.append(out.to(a.device))
    grid = torch.cat(values).reshape(resolution, resolution)
    return PlaneGrid(axis, axis, grid, coords_a, coords_b)
