r"""Backpropagation without stored activations for chains of exactly invertible blocks.

An ordinary training step keeps every intermediate activation of the forward pass until the
backward pass has used it, so memory grows linearly with depth. A bijective network does not need
them: the input of block :math:`f_k` is :math:`x_k = f_k^{-1}(y_k)`, computable from its output.
Memory-saving backpropagation stores only the network's output :math:`y_K`. In the backward pass it
walks the blocks from last to first; for each one it reconstructs :math:`x_k = f_k^{-1}(y_k)`,
re-runs :math:`(y_k, \ell_k) = f_k(x_k)` with autograd on, and takes the vector-Jacobian product

.. math::

    \bar x_k = \bar y_k^\top \frac{\partial y_k}{\partial x_k}
             + \bar\ell \frac{\partial \ell_k}{\partial x_k}, \qquad
    \bar\theta_k = \bar y_k^\top \frac{\partial y_k}{\partial \theta_k}
                 + \bar\ell \frac{\partial \ell_k}{\partial \theta_k},

where :math:`\bar\ell` is the gradient of the total log-determinant
:math:`\ell = \sum_k \ell_k`, which reaches every block unchanged. These are the gradients of
ordinary backpropagation (up to the round-off of the inverse), log-determinant terms included.
At any moment the backward pass holds one block's graph, so peak memory no longer grows with depth;
the price is one inverse and one extra forward pass per block.

Which blocks qualify: those whose :attr:`~preimage.nn.base.InvertibleModule.exact_inverse` is set
(ActNorm, InvConv1x1, the couplings, the reshapes, the DCTs) and composites made only of them
(:class:`~preimage.nn.base.InvertibleSequential`, :class:`~preimage.nn.reshape.Split`,
:class:`~preimage.models.FiRevNet`). :class:`~preimage.nn.iresblock.IResBlock` does not: its
fixed-point inverse is approximate, and its spectral normalisation advances a power iteration in
every training forward pass, so re-running the forward pass would not reproduce the stored one.
Blocks that contain dropout do not qualify either (the recomputation would draw another mask).

State that a forward pass changes is handled as follows. Buffers (batch-norm running statistics)
are restored after each recomputation, so every training step updates them exactly once, as
ordinary backpropagation does; batch norm in training mode normalises with the batch's own
statistics, so the recomputed pass is the same function. ActNorm's data-dependent initialisation
happens in the first (stored-nothing) forward pass; the recomputation then sees initialised
parameters, as ordinary backpropagation does after its forward pass.

Deviation: Gomez et al. reconstruct the activations of additive RevNet blocks and need no
log-determinant; here any exactly invertible block is reconstructed through its own ``inverse``,
and the log-determinant's gradient is part of every block's vector-Jacobian product. Double
backward (``create_graph=True``) is not supported.

References:
    Gomez, Ren, Urtasun, Grosse (2017), *The Reversible Residual Network: Backpropagation
    Without Storing Activations*, section 3.2 (reconstructing activations in the backward pass).
    Jacobsen et al. (2019), *Excessive Invariance Causes Adversarial Vulnerability*, section 2.1
    (the fi-RevNet built from such blocks).

Example:
    >>> import torch
    >>> from preimage.nn import ActNorm, AffineCoupling, InvertibleSequential
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> blocks = [AffineCoupling(4, hidden=8, swap=i % 2 == 1) for i in range(3)]
    >>> plain = InvertibleSequential(ActNorm(4), *blocks).double()
    >>> saving = InvertibleSequential(ActNorm(4), *blocks, memory_saving=True).double()
    >>> x = torch.randn(5, 4, 3, 3, dtype=torch.float64)
    >>> saving.load_state_dict(plain.state_dict())
    <All keys matched successfully>
    >>> def grads(f):
    ...     y, logdet = f(x)
    ...     return torch.autograd.grad(y.square().sum() - logdet.sum(), list(f.parameters()))
    >>> all(torch.allclose(a, b, atol=1e-10) for a, b in zip(grads(plain), grads(saving)))
    True
"""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

if TYPE_CHECKING:
    from preimage.nn.base import InvertibleModule, InvertibleSequential

__all__ = [
    "Grads",
    "SavedTensorMeter",
    "leaf_blocker",
    "memory_saving_forward",
    "recompute_leaf",
]

Grads = dict[int, Tensor]
"""Parameter gradients accumulated by the backward pass, keyed by ``id(parameter)``."""


def leaf_blocker(block: InvertibleModule) -> str | None:
    """Why ``block`` cannot be recomputed from its output, or ``None`` when it can."""
    name = type(block).__name__
    if not block.exact_inverse:
        return (
            f"{name} has no exact, deterministic inverse (a fixed-point inverse or an estimator); "
            "use memory_saving=False"
        )
    for m in block.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            return f"{name} contains dropout, which a recomputed forward pass would not repeat"
    return None


def _snapshot_buffers(block: nn.Module) -> list[tuple[Tensor, Tensor]]:
    # Only training-mode passes change buffers (batch-norm statistics, ActNorm's flag).
    if not any(m.training for m in block.modules()):
        return []
    return [(b, b.clone()) for b in block.buffers()]


def _restore_buffers(saved: list[tuple[Tensor, Tensor]]) -> None:
    for buffer, value in saved:
        buffer.copy_(value)


def recompute_leaf(
    block: InvertibleModule, y: Tensor, grad_y: Tensor, grad_logdet: Tensor, grads: Grads
) -> tuple[Tensor, Tensor]:
    """Reconstruct ``x = block.inverse(y)``, re-run the forward pass, take the VJP.

    Adds the parameter gradients to ``grads`` and returns ``(x, grad_x)``.
    """
    saved = _snapshot_buffers(block)
    with torch.no_grad():
        x = block.inverse(y)  # type: ignore[operator]
    x = x.detach().requires_grad_(True)
    params = [p for p in block.parameters() if p.requires_grad]
    with torch.enable_grad():
        y_re, logdet = block(x)
    outputs, grad_outputs = [y_re], [grad_y]
    if logdet.requires_grad:
        outputs.append(logdet)
        grad_outputs.append(grad_logdet)
    found = torch.autograd.grad(outputs, [x, *params], grad_outputs, allow_unused=True)
    # After the VJP: batch norm's backward reads the running statistics it saw.
    with torch.no_grad():
        _restore_buffers(saved)
    for p, g in zip(params, found[1:], strict=True):
        if g is not None:
            key = id(p)
            grads[key] = g if key not in grads else grads[key] + g
    grad_x = found[0] if found[0] is not None else torch.zeros_like(x)
    return x.detach(), grad_x


class _MemorySavingChain(torch.autograd.Function):
    """``(x, *params) -> (y, logdet)`` of a chain, storing only ``y`` for the backward pass."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, chain: InvertibleSequential, x: Tensor, *params: Tensor
    ) -> tuple[Tensor, Tensor]:
        y, logdet = chain.forward_stored(x)
        if y.data_ptr() == x.data_ptr():  # a pure reshape chain: keep the output apart from x
            y = y.clone()
        ctx.chain = chain
        ctx.params = params
        ctx.save_for_backward(y)
        return y, logdet

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_y: Tensor, grad_logdet: Tensor) -> tuple[Tensor | None, ...]:
        (y,) = ctx.saved_tensors
        grads: Grads = {}
        _, grad_x = ctx.chain.backward_from_output(y, grad_y, grad_logdet, grads)
        grad_x = grad_x if ctx.needs_input_grad[1] else None
        return (None, grad_x, *(grads.get(id(p)) for p in ctx.params))


def memory_saving_forward(chain: InvertibleSequential, x: Tensor) -> tuple[Tensor, Tensor]:
    """``chain(x)`` whose backward pass recomputes activations instead of storing them."""
    params = [p for p in chain.parameters() if p.requires_grad]
    if not params and not x.requires_grad:
        return chain.forward_stored(x)
    return _MemorySavingChain.apply(chain, x, *params)


class SavedTensorMeter:
    """Peak bytes of the tensors autograd holds for backward passes, while the context is open.

    Counts each storage once while any saved tensor refers to it, from the moment autograd saves
    it until the graph node that needs it has run (or the graph is freed). ``exclude`` (the
    parameters, say) is not counted: it lives on anyway. A deterministic measure of what
    backpropagation stores, independent of the allocator.

    Example:
        >>> import torch
        >>> w = torch.randn(3, 3, requires_grad=True)
        >>> with SavedTensorMeter(exclude=[w]) as meter:
        ...     (torch.randn(1000, 3) @ w).tanh().sum().backward()
        >>> meter.peak  # the input of the product and the output of tanh, 12 kB each
        24000
        >>> meter.live
        0
    """

    def __init__(self, exclude: Iterable[Tensor] = ()) -> None:
        self._excluded = {t.untyped_storage().data_ptr() for t in exclude}
        self._refs: dict[int, int] = {}
        self.live = 0
        self.peak = 0
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)

    def __enter__(self) -> SavedTensorMeter:
        self._hooks.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._hooks.__exit__(exc_type, exc, tb)

    def _pack(self, t: Tensor) -> object:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr in self._excluded:
            return t
        if self._refs.get(ptr, 0) == 0:
            self.live += storage.nbytes()
            self.peak = max(self.peak, self.live)
        self._refs[ptr] = self._refs.get(ptr, 0) + 1
        return _Held(t, ptr, storage.nbytes(), self)

    def _release(self, ptr: int, nbytes: int) -> None:
        self._refs[ptr] -= 1
        if self._refs[ptr] == 0:
            del self._refs[ptr]
            self.live -= nbytes

    @staticmethod
    def _unpack(held: object) -> Tensor:
        return held.tensor if isinstance(held, _Held) else held  # type: ignore[return-value]


class _Held:
    """A saved tensor that tells its meter when autograd lets go of it."""

    def __init__(self, tensor: Tensor, ptr: int, nbytes: int, meter: SavedTensorMeter) -> None:
        self.tensor = tensor
        self._ptr = ptr
        self._nbytes = nbytes
        self._meter = meter

    def __del__(self) -> None:
        self._meter._release(self._ptr, self._nbytes)
