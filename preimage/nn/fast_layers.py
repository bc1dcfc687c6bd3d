r"""Drop-in ``Conv2d`` and ``Linear`` layers: the same function, faster kernels on CPUs.

Both layers subclass the ``torch.nn`` layer they replace. They keep its parameters, its
``state_dict`` keys and layouts and its results up to the order of floating-point sums, so
checkpoints, optimisers and code that inspects the weights see an ordinary layer. Only the
kernel that runs changes:

- :class:`ChannelsLastConv2d` computes in channels-last layout (oneDNN's native layout on CPUs);
- :class:`OneDNNLinear` runs its matrix products, forward and backward, through oneDNN instead
  of the BLAS behind ``F.linear``. This is for float32 CPU tensors on builds that have oneDNN;
  any other input takes ``F.linear``.

The coupling sub-networks (:func:`preimage.nn.coupling.conv_subnet`,
:func:`~preimage.nn.coupling.mlp_subnet`) are built from them. Measured figures are in
BENCHMARKS.md ("Coupling stacks").

Example:
    >>> import torch
    >>> fast, plain = OneDNNLinear(4, 3), torch.nn.Linear(4, 3)
    >>> _ = plain.load_state_dict(fast.state_dict())
    >>> x = torch.randn(5, 4)
    >>> bool(torch.allclose(fast(x), plain(x), atol=1e-6))
    True
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ChannelsLastConv2d", "OneDNNLinear", "onednn_linear_available"]

_ONEDNN_MIN_MACS = 1_500_000
"""Smallest product (batch x in x out multiply-adds) that :class:`OneDNNLinear` hands to oneDNN.

A oneDNN call has a larger fixed cost than ``F.linear``'s, so small products are faster through
the BLAS; this is a little above the break-even point measured by ``bench/linear_kernels.py``
(BENCHMARKS.md, "Coupling stacks")."""


class ChannelsLastConv2d(nn.Conv2d):
    """A ``Conv2d`` that computes in channels-last (NHWC) layout; parameters stay NCHW.

    The weight is handed to the convolution as a channels-last copy, which makes PyTorch run the
    whole convolution, its output and its backward pass in that layout; consecutive layers then
    stay in it without reorders. The function is the same as ``nn.Conv2d``'s up to the order of
    floating-point sums, and the parameters, their gradients and the ``state_dict`` keep the usual
    layout, so checkpoints, optimisers and ``weight.view`` work as with any ``Conv2d``.

    Why: on CPUs, PyTorch's oneDNN convolutions work natively in channels-last layout, while the
    NCHW path may reorder activations and gradients to and from a blocked layout around every
    call. For the shapes of coupling sub-networks (few input channels, many hidden ones) the
    channels-last kernels were faster in both passes (BENCHMARKS.md, "Coupling stacks"). On
    other devices the layout is a valid choice as well; nothing here depends on the device.

    Example:
        >>> import torch
        >>> conv = ChannelsLastConv2d(2, 3, 3, padding=1)
        >>> plain = torch.nn.Conv2d(2, 3, 3, padding=1)
        >>> _ = plain.load_state_dict(conv.state_dict())
        >>> x = torch.randn(1, 2, 5, 5)
        >>> bool(torch.allclose(conv(x), plain(x), atol=1e-6))
        True
    """

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            # Unbatched (C, H, W) inputs have no channels-last layout.
            return super().forward(x)
        return self._conv_forward(
            x, self.weight.contiguous(memory_format=torch.channels_last), self.bias
        )


@functools.cache
def onednn_linear_available() -> bool:
    """Whether this PyTorch build runs float32 matrix products through oneDNN on the CPU.

    Probed once: the build must have oneDNN and its ``mkldnn::_linear_pointwise`` operator,
    and the operator must agree with ``F.linear`` on a small product. It is a private operator
    (the one ``torch.compile`` uses for CPU linear layers), so a build without it, or one where
    it behaves differently, falls back to ``F.linear`` instead of failing.

    Example:
        >>> isinstance(onednn_linear_available(), bool)
        True
    """
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(3, 5, generator=gen)
        w = torch.randn(4, 5, generator=gen)
        b = torch.randn(4, generator=gen)
        # The weight as a transposed view, the way the backward pass hands operands over.
        y = torch.ops.mkldnn._linear_pointwise(x, w.t().contiguous().t(), b, "none", [], "")
        return bool(torch.allclose(y, F.linear(x, w, b), rtol=1e-5, atol=1e-5))
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


def _onednn_mm_t(a: Tensor, b: Tensor, bias: Tensor | None = None) -> Tensor:
    r""":math:`a b^\top (+ \text{bias})` through oneDNN; ``a`` and ``b`` may be transposed views."""
    return torch.ops.mkldnn._linear_pointwise(a, b, bias, "none", [], "")


class _OneDNNLinearFunction(torch.autograd.Function):
    r""":math:`y = x W^\top + b` with all three products of forward and backward in oneDNN."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:  # type: ignore[override]
        # oneDNN wants dense rows; a coupling's input half is a strided view of the whole input.
        x = x.contiguous()
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _onednn_mm_t(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        need_x, need_w, need_b = ctx.needs_input_grad
        grad_b = grad.sum(0) if ctx.has_bias and need_b else None
        if torch.is_grad_enabled():
            # create_graph=True (a double backward): differentiable products, so that autograd
            # records them; the oneDNN operator has no derivative of its own.
            grad_x = grad @ weight if need_x else None
            grad_w = grad.t() @ x if need_w else None
            return grad_x, grad_w, grad_b
        grad_x = _onednn_mm_t(grad, weight.t()) if need_x else None
        grad_w = _onednn_mm_t(grad.t(), x.t()) if need_w else None
        return grad_x, grad_w, grad_b


class OneDNNLinear(nn.Linear):
    r"""A ``Linear`` layer whose matrix products run through oneDNN on CPUs.

    :math:`y = x W^\top + b`, as ``nn.Linear``; parameters, ``state_dict`` and results (up to
    the order of float sums) are the same. For a float32 CPU batch ``(B, in_features)`` the
    forward product and the two backward products (:math:`g W` for the input,
    :math:`g^\top x` for the weight) run through oneDNN, when this build has it
    (:func:`onednn_linear_available`) and the product is large enough to pay for oneDNN's
    overhead per call (``batch * in_features * out_features`` of at least 1.5 million). Anything
    else (small products, other dtypes and devices, inputs with more than one batch dimension)
    takes ``F.linear``. A double backward (``create_graph=True``) works: the backward pass then
    uses differentiable products.

    Why: on the dev box's AMD CPU, the BLAS that PyTorch's CPU wheels call for ``F.linear`` ran
    the coupling sub-networks' products at a little over half the speed of oneDNN's kernels
    (BENCHMARKS.md, "Coupling stacks"). On CPUs where the BLAS runs near its peak the gain is
    smaller; nothing but speed depends on which path runs.

    Example:
        >>> import torch
        >>> layer = OneDNNLinear(3, 2)
        >>> layer(torch.randn(4, 3)).shape
        torch.Size([4, 2])
    """

    def forward(self, x: Tensor) -> Tensor:
        if (
            x.dim() == 2
            and x.shape[0] * self.in_features * self.out_features >= _ONEDNN_MIN_MACS
            and x.device.type == "cpu"
            and x.dtype == torch.float32
            and self.weight.dtype == torch.float32
            and onednn_linear_available()
        ):
            return _OneDNNLinearFunction.apply(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)
