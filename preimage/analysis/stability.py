r"""Inverse stability of networks through their exact linearisation (thesis section 3.4).

A ReLU network is affine on each polytope :math:`P` of its input space,
:math:`F(x) = A_P x + b_P` with :math:`A_P = A_L D_{I_{L-1}} A_{L-1} \cdots D_{I_1} A_1`
(definition 3.4), so its Jacobian at :math:`x` *is* :math:`A_P` (exact, not a first-order
approximation, away from the polytopes' boundaries). :func:`linearization` computes it for any
``nn.Module`` with :mod:`torch.func` (forward mode when the input is smaller than the output,
reverse mode otherwise), for the whole network or up to a named layer.

:func:`stability_profile` reads off, per layer, what section 3.4.2 and figure 3.4 report:

* the singular values :math:`\sigma_1 \ge \dots` of :math:`A_P` up to that layer: all of them
  (dense SVD), or, with ``k``, the ``k`` largest and ``k`` smallest by Lanczos
  (:func:`scipy.sparse.linalg.svds` on a matrix-free operator whose products are
  :func:`torch.func.jvp` and :func:`torch.func.vjp`, so the Jacobian is never formed: memory
  stays at a few activations, but the smallest end converges slowly, see BENCHMARKS.md; for
  up to a few thousand inputs the dense path is faster);
* the rank (number of non-zero singular values, relative threshold ``rtol``), the number of
  *invariant directions* :math:`\dim N(A_P)` = inputs - rank, and the condition number over the
  non-zero singular values, :math:`\sigma_1 / \sigma_\text{rank}` (invariance shows in the zero
  singular values, instability in the condition number: "the condition number only takes
  non-zero singular values into account").

For a ``Sequential`` whose layers are its direct children, the dense path pushes the tangents
through the layers once (layer :math:`l`'s Jacobian is the previous one's columns pushed through
layer :math:`l`), so a profile costs one forward-mode sweep.

:func:`linear_classifier_diagnostic` is the diagnostic of thesis section 6.2.1 for a linear
classifier (or a linearisation) :math:`A`: :math:`\sigma_\max` bounds the effect of a
perturbation, :math:`\|A\Delta\| \le \sigma_\max \|\Delta\|` (perturbation robustness), while
invariance is governed by the null space (directions that change nothing) and by the smallest
non-zero singular value (the stability of the inverse).

References:
    Behrmann (thesis), *Invertibility and Domain Knowledge*, section 3.4 (definition 3.4,
    lemmas 3.5-3.6, section 3.4.2, figure 3.4) and section 6.2.1.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    >>> x = torch.randn(1, 3, dtype=torch.float64)
    >>> a = linearization(net, x)
    >>> a.shape, torch.allclose(a, torch.autograd.functional.jacobian(net, x).reshape(2, 3))
    (torch.Size([2, 3]), True)
    >>> [r.layer for r in stability_profile(net, x)]
    ['0', '1', '2']
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator, svds
from torch import Tensor, nn

from preimage.errors import ConfigError, ShapeError

__all__ = [
    "ClassifierDiagnostic",
    "LayerStability",
    "linear_classifier_diagnostic",
    "linearization",
    "stability_profile",
]


@dataclass(frozen=True)
class LayerStability:
    """The singular-value summary of the linearisation up to one layer.

    Attributes:
        layer: the layer's name (``""``: the whole model).
        outputs: output units of the layer.
        inputs: input units of the network.
        singular_values: all singular values, descending (``complete``), or the ``k`` largest
            followed by the ``k`` smallest, descending.
        complete: whether ``singular_values`` holds all of them.
        rank: number of non-zero singular values (``None`` unless complete).
        invariant_directions: :math:`\\dim N(A_P)` = ``inputs - rank`` (``None`` unless complete).
        condition: :math:`\\sigma_1 / \\sigma_\\text{rank}` over the non-zero singular values
            (``nan`` when all are zero); a lower bound when not complete.
    """

    layer: str
    outputs: int
    inputs: int
    singular_values: Tensor
    complete: bool
    rank: int | None
    invariant_directions: int | None
    condition: float


def _check_input(x: Tensor) -> None:
    if x.ndim < 1 or x.shape[0] != 1:
        raise ShapeError(f"x must be one input with a batch dimension of 1, got {tuple(x.shape)}")


def _module(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n]
        raise ConfigError(f"no layer {name!r} in the model; layers: {names}") from None


def _function(model: nn.Module, x: Tensor, upto: str | None) -> Callable[[Tensor], Tensor]:
    """Flat input -> flat output of ``model`` (or of its layer ``upto``) at batch size 1."""
    shape = x.shape
    if upto is None or upto == "":

        def whole(v: Tensor) -> Tensor:
            return model(v.reshape(shape)).reshape(-1)

        return whole
    if isinstance(model, nn.Sequential) and upto in dict(model.named_children()):
        names = [n for n, _ in model.named_children()]
        head = model[: names.index(upto) + 1]
        return lambda v: head(v.reshape(shape)).reshape(-1)
    layer = _module(model, upto)

    def partial(v: Tensor) -> Tensor:
        captured: list[Tensor] = []
        handle = layer.register_forward_hook(lambda _m, _a, out: captured.append(out))
        try:
            model(v.reshape(shape))
        finally:
            handle.remove()
        if not captured:
            raise ConfigError(f"layer {upto!r} is not called by the model's forward pass")
        return captured[0].reshape(-1)

    return partial


def _dense_jacobian(f: Callable[[Tensor], Tensor], v: Tensor, chunk_size: int) -> Tensor:
    n = v.numel()
    m = f(v).numel()
    eye = torch.eye(n if n <= m else m, dtype=v.dtype, device=v.device)
    blocks = []
    if n <= m:
        push = torch.func.vmap(lambda t: torch.func.jvp(f, (v,), (t,))[1])
        for chunk in eye.split(chunk_size):
            blocks.append(push(chunk))
        return torch.cat(blocks).T
    _, pull_one = torch.func.vjp(f, v)
    pull = torch.func.vmap(lambda t: pull_one(t)[0])
    for chunk in eye.split(chunk_size):
        blocks.append(pull(chunk))
    return torch.cat(blocks)


def linearization(
    model: nn.Module, x: Tensor, *, upto: str | None = None, chunk_size: int = 256
) -> Tensor:
    r"""The exact linearisation :math:`A_P` of ``model`` at ``x`` (definition 3.4).

    The Jacobian of the flattened output (of the whole model, or of its submodule ``upto``)
    with respect to the flattened input, by :mod:`torch.func` in ``x``'s dtype (use float64
    for small singular values). The model is evaluated as it is (call ``eval()`` first for
    dropout or batch norm).

    Args:
        model: any ``nn.Module`` taking a batch.
        x: one input, with a batch dimension of 1.
        upto: name of a submodule (``model.get_submodule``): the linearisation of the network
            up to and including that layer.
        chunk_size: tangents pushed through the network at once.

    Returns:
        The ``(outputs, inputs)`` matrix.

    Raises:
        ShapeError: when ``x`` is not one input.
        ConfigError: for an unknown layer name.

    References:
        Behrmann (thesis), *Invertibility and Domain Knowledge*, definition 3.4.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
        >>> a = linearization(net, torch.ones(1, 2), upto="0")
        >>> torch.equal(a, net[0].weight.detach())
        True
    """
    _check_input(x)
    f = _function(model, x, upto)
    return _dense_jacobian(f, x.detach().reshape(-1), chunk_size).detach()


def _summary(
    layer: str, values: Tensor, outputs: int, inputs: int, complete: bool, rtol: float | None
) -> LayerStability:
    values = values.sort(descending=True).values
    top = float(values[0]) if values.numel() else 0.0
    eps = torch.finfo(values.dtype).eps
    threshold = (max(outputs, inputs) * eps if rtol is None else rtol) * top
    nonzero = values[values > threshold]
    condition = top / float(nonzero[-1]) if nonzero.numel() else math.nan
    rank = int(nonzero.numel()) if complete else None
    invariant = inputs - rank if rank is not None else None
    return LayerStability(layer, outputs, inputs, values, complete, rank, invariant, condition)


def _lanczos(f: Callable[[Tensor], Tensor], v: Tensor, k: int) -> tuple[Tensor, int]:
    """The ``k`` largest and ``k`` smallest singular values of the Jacobian of ``f`` at ``v``."""
    n = v.numel()
    out, pull = torch.func.vjp(f, v)
    m = out.numel()

    def matvec(u: np.ndarray) -> np.ndarray:
        t = torch.as_tensor(np.ascontiguousarray(u).reshape(-1), dtype=v.dtype, device=v.device)
        return torch.func.jvp(f, (v,), (t,))[1].detach().cpu().double().numpy()

    def rmatvec(u: np.ndarray) -> np.ndarray:
        t = torch.as_tensor(np.ascontiguousarray(u).reshape(-1), dtype=v.dtype, device=v.device)
        return pull(t)[0].detach().cpu().double().numpy()

    op = LinearOperator((m, n), matvec=matvec, rmatvec=rmatvec, dtype=np.float64)
    small = min(m, n)
    if not 1 <= k < small:
        raise ConfigError(f"k must lie in [1, {small - 1}] for a {m} x {n} linearisation")
    rng = np.random.default_rng(0)
    start = rng.standard_normal(small)
    top = svds(op, k=k, which="LM", v0=start, return_singular_vectors=False)
    bottom = svds(op, k=k, which="SM", v0=start, return_singular_vectors=False)
    values = np.unique(np.concatenate([top, np.abs(bottom)]))[::-1].copy()
    return torch.as_tensor(values, dtype=v.dtype, device=v.device), m


def stability_profile(
    model: nn.Module,
    x: Tensor,
    *,
    layers: Sequence[str] | None = None,
    k: int | None = None,
    rtol: float | None = None,
    chunk_size: int = 256,
) -> list[LayerStability]:
    r"""Singular values, rank, invariant directions and condition number per layer.

    For each layer, the linearisation of the network up to it (:func:`linearization`) is
    summarised as a :class:`LayerStability`. With ``k=None`` every singular value is computed
    (dense Jacobian, :func:`torch.linalg.svdvals`); with ``k`` the ``k`` largest and ``k``
    smallest by Lanczos on a matrix-free operator (large layers: nothing of size
    outputs x inputs is formed).

    Args:
        model: any ``nn.Module``.
        x: one input with a batch dimension of 1, in the dtype the analysis should use.
        layers: submodule names (default: the model's direct children, or the whole model
            when it has none).
        k: number of largest and of smallest singular values by Lanczos; ``None`` for all.
        rtol: singular values below ``rtol`` :math:`\sigma_1` count as zero (default
            :math:`\max(m, n)\,\varepsilon`, numpy's ``matrix_rank`` rule).
        chunk_size: tangents pushed through the network at once (dense path).

    Returns:
        One record per layer, in the order of ``layers``.

    References:
        Behrmann (thesis), *Invertibility and Domain Knowledge*, section 3.4.2, figure 3.4.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).double()
        >>> with torch.no_grad():  # every unit off: the network ignores its input
        ...     _ = net[0].bias.fill_(-100.0)
        >>> last = stability_profile(net, torch.zeros(1, 4, dtype=torch.float64))[-1]
        >>> last.rank, last.invariant_directions
        (0, 4)
    """
    _check_input(x)
    if layers is None:
        children = [name for name, _ in model.named_children()]
        layers = children or [""]
    names = list(layers)
    v = x.detach().reshape(-1)
    n = v.numel()
    if k is not None:
        records = []
        for name in names:
            values, m = _lanczos(_function(model, x, name), v, k)
            records.append(_summary(name, values, m, n, False, rtol))
        return records
    if isinstance(model, nn.Sequential) and set(names) <= set(dict(model.named_children())):
        jacobians = _sequential_jacobians(model, x, names, chunk_size)
    else:
        jacobians = (
            (name, linearization(model, x, upto=name, chunk_size=chunk_size)) for name in names
        )
    found = {
        name: _summary(name, _svdvals(jacobian), jacobian.shape[0], n, True, rtol)
        for name, jacobian in jacobians
    }
    return [found[name] for name in names]


def _svdvals(jacobian: Tensor) -> Tensor:
    """All singular values; zero rows (units a ReLU switched off) are dropped first.

    Dropping zero rows leaves the singular values unchanged and makes the SVD of a layer behind
    a ReLU cost only its active units.
    """
    rows = jacobian[jacobian.abs().amax(dim=1) > 0]
    if rows.shape[0] == 0:
        return jacobian.new_zeros(min(jacobian.shape))
    values = torch.linalg.svdvals(rows)
    missing = min(jacobian.shape) - values.numel()
    return torch.cat([values, values.new_zeros(missing)]) if missing else values


def _sequential_jacobians(
    model: nn.Sequential, x: Tensor, names: Sequence[str], chunk_size: int
) -> Iterator[tuple[str, Tensor]]:
    """Jacobians after each named child, by pushing all tangents through the layers once.

    Yields them in the model's order, so that only one is kept alive at a time.
    """
    h = x.detach()
    n = h.numel()
    tangents = torch.eye(n, dtype=x.dtype, device=x.device).reshape(n, *x.shape[1:])
    wanted = set(names)
    for name, child in model.named_children():
        if not wanted:
            break

        def one(t: Tensor, h: Tensor = h, child: nn.Module = child) -> Tensor:
            return torch.func.jvp(lambda u: child(u[None])[0], (h[0],), (t,))[1]

        push = torch.func.vmap(one)
        tangents = torch.cat([push(chunk).detach() for chunk in tangents.split(chunk_size)])
        with torch.no_grad():
            h = child(h)
        if name in wanted:
            wanted.discard(name)
            yield name, tangents.reshape(n, -1).T


@dataclass(frozen=True)
class ClassifierDiagnostic:
    """Perturbation robustness vs invariance of a linear map (thesis section 6.2.1).

    Attributes:
        sigma_max: largest singular value: :math:`\\|A\\Delta\\| \\le \\sigma_\\max \\|\\Delta\\|`,
            the forward stability that bounds perturbation-based adversarial examples.
        sigma_min: smallest non-zero singular value: an input change of norm
            :math:`\\delta` orthogonal to the null space changes the output by at least
            :math:`\\sigma_\\min \\delta` (the stability of the inverse).
        rank: number of non-zero singular values.
        null_dim: dimension of the null space (invariant directions).
        null_space: an orthonormal basis of the null space as columns, ``(inputs, null_dim)``.
    """

    sigma_max: float
    sigma_min: float
    rank: int
    null_dim: int
    null_space: Tensor


def linear_classifier_diagnostic(
    weight: Tensor, *, rtol: float | None = None
) -> ClassifierDiagnostic:
    r"""The diagnostic of thesis section 6.2.1 for a linear classifier :math:`A`.

    Perturbation robustness is governed by :math:`\sigma_\max(A)`, invariance by the null space
    of :math:`A` and the smallest non-zero singular value: the two are uncoupled for a general
    :math:`A`. Apply it to ``linearization(model, x)`` for a network at ``x``.

    Args:
        weight: the ``(outputs, inputs)`` matrix.
        rtol: relative threshold for zero singular values (default :math:`\max(m, n)\varepsilon`).

    Returns:
        The singular-value extremes, rank and null space.

    References:
        Behrmann (thesis), *Invertibility and Domain Knowledge*, section 6.2.1.

    Example:
        >>> d = linear_classifier_diagnostic(torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.5, 0.0]]))
        >>> d.sigma_max, d.sigma_min, d.null_dim, d.null_space[:, 0].abs().tolist()
        (3.0, 0.5, 1, [0.0, 0.0, 1.0])
    """
    if weight.ndim != 2:
        raise ShapeError(f"weight must be a matrix, got shape {tuple(weight.shape)}")
    w = weight.detach()
    _, s, vh = torch.linalg.svd(w, full_matrices=True)
    eps = torch.finfo(w.dtype).eps
    top = float(s[0]) if s.numel() else 0.0
    threshold = (max(w.shape) * eps if rtol is None else rtol) * top
    rank = int((s > threshold).sum())
    sigma_min = float(s[rank - 1]) if rank else 0.0
    return ClassifierDiagnostic(top, sigma_min, rank, w.shape[1] - rank, vh[rank:].T)
