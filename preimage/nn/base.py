"""The invertible-module contract and its sequential composition.

Every building block of :mod:`preimage.nn` maps :math:`x \\mapsto (y, \\log|\\det J_f(x)|)` and
can undo itself. Composition adds log-determinants (chain rule,
:math:`\\log|\\det J_{g\\circ f}(x)| = \\log|\\det J_g(f(x))| + \\log|\\det J_f(x)|`).

References:
    Jacobsen, Behrmann, Zemel, Bethge (2019), *Excessive Invariance Causes Adversarial
    Vulnerability*, section 2.1 and figure 3 (bijective networks built from such blocks).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from preimage.errors import ConfigError, DTypeError, ShapeError
from preimage.nn.memory_saving import Grads, leaf_blocker, memory_saving_forward, recompute_leaf

__all__ = [
    "FlatCodeModel",
    "InvertibleModule",
    "InvertibleSequential",
    "Shape",
    "check_batch",
    "check_shape",
    "flat_dim",
    "module_dtype",
    "sum_except_batch",
]

Shape = tuple[int, ...]
"""Shape of one sample, without the batch dimension, e.g. ``(1, 28, 28)`` or ``(100,)``."""


class InvertibleModule(nn.Module):
    """Base class of all invertible blocks.

    Subclasses implement :meth:`forward` returning ``(y, logdet)`` where ``logdet`` has shape
    ``(batch,)`` and equals :math:`\\log|\\det \\partial y / \\partial x|` exactly (unless the class
    documents an estimator), and :meth:`inverse` returning ``x``. Blocks whose output shape
    differs from their input shape override :meth:`output_shape`.

    Example:
        >>> import torch
        >>> from preimage.nn import InvertibleSequential, Squeeze
        >>> f = InvertibleSequential(Squeeze(), Squeeze())
        >>> x = torch.randn(2, 1, 8, 8)
        >>> y, logdet = f(x)
        >>> y.shape, logdet.shape
        (torch.Size([2, 16, 2, 2]), torch.Size([2]))
        >>> bool(torch.equal(f.inverse(y), x))
        True
    """

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement forward")

    def inverse(self, y: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement inverse")

    def output_shape(self, in_shape: Shape) -> Shape:
        """Shape of one output sample for an input sample of shape ``in_shape``."""
        return tuple(in_shape)

    exact_inverse: ClassVar[bool] = False
    """Whether :meth:`inverse` undoes :meth:`forward` to float precision, deterministically.

    Memory-saving backpropagation (:mod:`preimage.nn.memory_saving`) recomputes a block's input
    from its output only for blocks that set this; it is off by default so that a new block is
    never recomputed by accident."""

    def recompute_blocker(self) -> str | None:
        """Why memory-saving backpropagation cannot recompute this block's input, or ``None``."""
        return leaf_blocker(self)

    def backward_from_output(
        self, y: Tensor, grad_y: Tensor, grad_logdet: Tensor, grads: Grads
    ) -> tuple[Tensor, Tensor]:
        """Input and input gradient of this block from its output and the output gradients.

        Used by memory-saving backpropagation: recomputes ``x = inverse(y)``, re-runs the forward
        pass on it and adds the parameter gradients to ``grads``. Composite blocks override it to
        walk their children instead of recomputing themselves as a whole.
        """
        return recompute_leaf(self, y, grad_y, grad_logdet, grads)

    def fusion_key(self) -> object | None:
        """Blocks with equal keys that follow each other in a chain run as one group.

        :class:`InvertibleSequential` hands such a run to the first block's
        :meth:`forward_fused` / :meth:`inverse_fused` (couplings pass the two halves on instead
        of concatenating and splitting them between layers). ``None``: never fused. Module hooks
        of the fused blocks do not fire.
        """
        return None

    def forward_fused(
        self, run: Sequence[InvertibleModule], x: Tensor
    ) -> tuple[Tensor, Tensor | None]:
        """``run`` (which starts with this block) applied to ``x``; log-det ``None`` means zero."""
        logdet = None
        for layer in run:
            x, ld = layer(x)
            logdet = ld if logdet is None else logdet + ld
        return x, logdet

    def inverse_fused(self, run: Sequence[InvertibleModule], y: Tensor) -> Tensor:
        """Inverse of :meth:`forward_fused`."""
        for layer in reversed(run):
            y = layer.inverse(y)  # type: ignore[operator]
        return y

    @staticmethod
    def _zero_logdet(x: Tensor) -> Tensor:
        return x.new_zeros(x.shape[0])


class InvertibleSequential(InvertibleModule):
    """A chain of invertible modules; log-determinants add up, the inverse runs backwards.

    Args:
        *modules: the blocks, applied left to right. A single iterable is accepted too.
        memory_saving: backpropagate without storing activations: training stores only the
            output, and the backward pass recomputes every block's input from its output
            (:mod:`preimage.nn.memory_saving`; the RevNet idea with exact log-det gradients).
            Every block must have an exact inverse (:attr:`InvertibleModule.exact_inverse`);
            otherwise a :class:`~preimage.errors.ConfigError` names the first that has not.

    Example:
        >>> import torch
        >>> from preimage.nn import ActNorm, InvertibleSequential, InvConv1x1
        >>> f = InvertibleSequential(ActNorm(4), InvConv1x1(4))
        >>> x = torch.randn(3, 4, 5, 5)
        >>> with torch.no_grad():
        ...     y, logdet = f(x)
        ...     x_rec = f.inverse(y)
        >>> float((x_rec - x).abs().max()) < 1e-5
        True
    """

    def __init__(
        self,
        *modules: InvertibleModule | Iterable[InvertibleModule],
        memory_saving: bool = False,
    ) -> None:
        super().__init__()
        if len(modules) == 1 and not isinstance(modules[0], nn.Module):
            modules = tuple(modules[0])
        for m in modules:
            if not isinstance(m, InvertibleModule):
                raise TypeError(
                    f"InvertibleSequential takes InvertibleModule instances, got {type(m).__name__}"
                )
        self.layers = nn.ModuleList(modules)
        self.memory_saving = bool(memory_saving)
        if self.memory_saving:
            reason = self.recompute_blocker()
            if reason is not None:
                raise ConfigError(f"memory_saving=True is not possible: {reason}")

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, index: int) -> InvertibleModule:
        return self.layers[index]  # type: ignore[return-value]

    def __iter__(self):  # type: ignore[override]
        return iter(self.layers)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.memory_saving and torch.is_grad_enabled():
            return memory_saving_forward(self, x)
        return self.forward_stored(x)

    def forward_stored(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The forward pass with ordinary autograd (activations stored for the backward pass)."""
        logdet = x.new_zeros(x.shape[0])
        for run in _runs(self.layers):
            if len(run) == 1:
                x, ld = run[0](x)
            else:
                x, ld = run[0].forward_fused(run, x)
            if ld is not None:
                logdet = logdet + ld
        return x, logdet

    def recompute_blocker(self) -> str | None:
        for layer in self.layers:
            reason = layer.recompute_blocker()  # type: ignore[operator]
            if reason is not None:
                return reason
        return None

    def backward_from_output(
        self, y: Tensor, grad_y: Tensor, grad_logdet: Tensor, grads: Grads
    ) -> tuple[Tensor, Tensor]:
        for layer in reversed(self.layers):
            y, grad_y = layer.backward_from_output(y, grad_y, grad_logdet, grads)  # type: ignore[operator]
        return y, grad_y

    def inverse(self, y: Tensor) -> Tensor:
        for run in reversed(_runs(self.layers)):
            y = run[0].inverse(y) if len(run) == 1 else run[0].inverse_fused(run, y)  # type: ignore[operator]
        return y

    def output_shape(self, in_shape: Shape) -> Shape:
        shape = tuple(in_shape)
        for layer in self.layers:
            shape = layer.output_shape(shape)  # type: ignore[operator]
        return shape


def _runs(layers: Iterable[nn.Module]) -> list[list[InvertibleModule]]:
    """Consecutive layers grouped by equal, non-``None`` :meth:`InvertibleModule.fusion_key`."""
    runs: list[list[InvertibleModule]] = []
    last = None
    for layer in layers:
        key = layer.fusion_key()  # type: ignore[operator]
        if key is not None and key == last:
            runs[-1].append(layer)  # type: ignore[arg-type]
        else:
            runs.append([layer])  # type: ignore[list-item]
        last = key
    return runs


def check_shape(x: Tensor, ndim: Sequence[int], who: str) -> None:
    """Raise a clear ``ValueError`` unless ``x.dim()`` is one of ``ndim``."""
    if x.dim() not in ndim:
        wanted = " or ".join(str(n) for n in ndim)
        raise ShapeError(f"{who} expects a {wanted}-D batch, got shape {tuple(x.shape)}")


def sum_except_batch(x: Tensor) -> Tensor:
    """Sum over every dimension but the first."""
    return x.reshape(x.shape[0], -1).sum(dim=1)


def flat_dim(shape: Shape) -> int:
    """Number of entries of one sample of ``shape``."""
    n = 1
    for s in shape:
        n *= int(s)
    return n


def module_dtype(module: nn.Module) -> torch.dtype | None:
    """The floating-point dtype of ``module``'s first parameter or buffer (``None`` if none)."""
    for t in (*module.parameters(), *module.buffers()):
        if t.is_floating_point():
            return t.dtype
    return None


def check_batch(module: nn.Module, x: Tensor, sample_shape: Shape | None, who: str) -> None:
    """Refuse, with a typed one-line error, a batch that ``module`` cannot take.

    Raises:
        ConfigError: ``x`` is not a tensor.
        ShapeError: an empty batch, or samples not of ``sample_shape`` (when given).
        DTypeError: ``x`` is not floating point or its dtype differs from the module's, e.g.
            float64 inputs for a float32 model (torch would fail deep inside with a
            ``RuntimeError``, or silently compute in mixed precision).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> check_batch(nn.Linear(2, 2), torch.zeros(3, 2), (2,), "Linear")
        >>> try:
        ...     check_batch(nn.Linear(2, 2), torch.zeros(3, 2, dtype=torch.float64), (2,), "f")
        ... except DTypeError as err:
        ...     print(err)
        f got float64 inputs but its parameters are float32; convert one of them (x.to(...))
    """
    if not isinstance(x, Tensor):
        raise ConfigError(f"{who} expects a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 1 or x.shape[0] == 0:
        raise ShapeError(f"{who} got an empty batch (shape {tuple(x.shape)})")
    if sample_shape is not None and tuple(x.shape[1:]) != tuple(sample_shape):
        raise ShapeError(
            f"{who} expects inputs of shape (batch, {', '.join(map(str, sample_shape))}), "
            f"got {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise DTypeError(f"{who} expects floating-point inputs, got {x.dtype}")
    dtype = module_dtype(module)
    if dtype is not None and x.dtype != dtype:
        name = str(x.dtype).removeprefix("torch.")
        own = str(dtype).removeprefix("torch.")
        raise DTypeError(
            f"{who} got {name} inputs but its parameters are {own}; convert one of them (x.to(...))"
        )


class FlatCodeModel(InvertibleModule):
    """A whole model: a body ``net`` from inputs of ``in_shape`` to flat codes of ``code_dim``.

    The model classes (fi-RevNet, i-ResNet, Glow) differ in their body; around it they do the
    same: refuse a batch of the wrong sample shape or dtype with a typed error naming the
    class, and hand back codes as ``(batch, code_dim)`` whatever the body's readout leaves.
    Subclasses set ``in_shape``, ``code_dim`` and ``net`` in ``__init__``.

    Example:
        >>> import torch
        >>> from preimage.models import GlowFlow
        >>> flow = GlowFlow((1, 4, 4), stages=1, blocks_per_stage=1, hidden=4)
        >>> z, logdet = flow(torch.rand(3, 1, 4, 4))
        >>> z.shape, flow.inverse(z).shape
        (torch.Size([3, 16]), torch.Size([3, 1, 4, 4]))
        >>> try:
        ...     flow.inverse(torch.zeros(3, 15))
        ... except ShapeError as err:
        ...     print(err)
        GlowFlow.inverse expects inputs of shape (batch, 16), got (3, 15)
    """

    in_shape: Shape
    code_dim: int
    net: InvertibleModule

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Map a batch to ``(z, logdet)`` with flat ``z`` of shape ``(batch, code_dim)``."""
        check_batch(self, x, self.in_shape, type(self).__name__)
        z, logdet = self.net(x)
        return z.reshape(x.shape[0], -1), logdet

    def inverse(self, z: Tensor) -> Tensor:
        """Map flat codes ``z`` of shape ``(batch, code_dim)`` back to inputs."""
        check_batch(self, z, (self.code_dim,), f"{type(self).__name__}.inverse")
        return self.net.inverse(z)
