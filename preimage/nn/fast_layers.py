r"""Drop-in ``Conv2d`` and ``Linear`` layers: the same function, faster kernels on CPUs.

Both layers subclass the ``torch.nn`` layer they replace. They keep its parameters, its
``state_dict`` keys and layouts and its results up to the order of floating-point sums, so
checkpoints, optimisers and code that inspects the weights see an ordinary layer. Only the
kernel that runs changes:

- :class:`ChannelsLastConv2d` computes in channels-last layout (oneDNN's native layout on CPUs);
- :class:`TapSumConv2d`, for convolutions with few output channels, computes all kernel taps in
  one matrix product and sums the shifted tap planes;
- :class:`OneDNNLinear` runs its matrix products, forward and backward, through oneDNN instead
  of the BLAS behind ``F.linear``, on CPUs where that was measured to be faster
  (:func:`onednn_linear_faster`). This is for float32 CPU tensors on builds that have oneDNN;
  any other input, and any other CPU, takes ``F.linear``.

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

__all__ = [
    "ChannelsLastConv2d",
    "OneDNNLinear",
    "TapSumConv2d",
    "onednn_linear_available",
    "onednn_linear_faster",
]

_ONEDNN_MIN_MACS = 1_500_000
"""Smallest product (batch x in x out multiply-adds) that :class:`OneDNNLinear` hands to oneDNN.

A oneDNN call has a larger fixed cost than ``F.linear``'s, so small products are faster through
the BLAS; this is a little above the break-even point measured by ``bench/linear_kernels.py``
(BENCHMARKS.md, "Coupling stacks")."""

_TAP_SUM_MAX_OUT = 4
"""Most output channels for which :class:`TapSumConv2d` takes its tap-sum path.

Measured by ``bench/tap_sum.py`` (BENCHMARKS.md, "Coupling stacks"): up to 4 output channels
the tap sum beat oneDNN's channels-last kernel in both passes; at 8 it was at parity forward and
slower backward, above that slower in both."""


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


def _cpu_vendor(cpuinfo: str) -> str:
    """The ``vendor_id`` of a Linux ``/proc/cpuinfo`` text, or ``""``."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "vendor_id":
            return value.strip()
    return ""


@functools.cache
def onednn_linear_faster() -> bool:
    """Whether :class:`OneDNNLinear` should hand its products to oneDNN on this machine.

    True where oneDNN's linear operator is available (:func:`onednn_linear_available`), the BLAS
    behind ``F.linear`` is Intel's MKL and the CPU is an AMD one. That is where oneDNN was
    measured to be faster: on an AMD EPYC core oneDNN ran the sub-networks' products much
    faster than MKL, on an Intel Xeon core MKL was the faster of the two at every shape
    (``bench/linear_kernels.py``; BENCHMARKS.md, "Coupling stacks"). The rule reads the CPU's
    vendor, not a timing, so the kernel (and with it the order of float sums) is the same in
    every run on a machine.
    Elsewhere (other vendors, other BLAS, systems without ``/proc/cpuinfo``) it is False.

    Example:
        >>> isinstance(onednn_linear_faster(), bool)
        True
    """
    if not (torch.backends.mkl.is_available() and onednn_linear_available()):
        return False
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return _cpu_vendor(f.read()) == "AuthenticAMD"
    except OSError:
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
    :math:`g^\top x` for the weight) run through oneDNN, on machines where that is faster
    (:func:`onednn_linear_faster`) and when the product is large enough to pay for oneDNN's
    overhead per call (``batch * in_features * out_features`` of at least 1.5 million). Anything
    else (small products, other dtypes and devices, inputs with more than one batch dimension)
    takes ``F.linear``. A double backward (``create_graph=True``) works: the backward pass then
    uses differentiable products.

    Why: on an AMD CPU, the BLAS that PyTorch's CPU wheels call for ``F.linear`` (MKL) ran the
    coupling sub-networks' products at a little over half the speed of oneDNN's kernels; on an
    Intel CPU it was the faster one (BENCHMARKS.md, "Coupling stacks"). Nothing but speed
    depends on which path runs.

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
            and onednn_linear_faster()
        ):
            return _OneDNNLinearFunction.apply(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)


def _tap_slices(
    kh: int, kw: int, ph: int, pw: int, h: int, w: int
) -> list[tuple[int, int, slice, slice, slice, slice]]:
    """For each tap ``(i, j)``: the output rows/columns it reaches and the tap-plane ones it reads.

    With zero padding ``(ph, pw)`` and stride 1, tap ``(i, j)`` adds its plane's value at
    ``(r + i - ph, c + j - pw)`` to output ``(r, c)`` wherever that position lies inside.
    """
    out = []
    for i in range(kh):
        for j in range(kw):
            di, dj = i - ph, j - pw
            out.append(
                (
                    i,
                    j,
                    slice(max(0, -di), h - max(0, di)),
                    slice(max(0, -dj), w - max(0, dj)),
                    slice(max(0, di), h - max(0, -di)),
                    slice(max(0, dj), w - max(0, -dj)),
                )
            )
    return out


def _tap_weight(weight: Tensor) -> Tensor:
    """The weight ``(out, in, kh, kw)`` as one matrix ``(kh * kw * out, in)``, rows by tap."""
    co, ci, kh, kw = weight.shape
    return weight.permute(2, 3, 0, 1).reshape(kh * kw * co, ci)


def _tap_sum_conv(x: Tensor, weight: Tensor, bias: Tensor | None, ph: int, pw: int) -> Tensor:
    """Stride-1 zero-padded convolution as one product for all taps plus shifted sums."""
    b, ci, h, w = x.shape
    co, _, kh, kw = weight.shape
    # Rows of X are pixels; for a channels-last input this reshape is a view.
    pixels = x.permute(0, 2, 3, 1).reshape(b * h * w, ci)
    # One plane (out, batch, h, w) per tap, each row of the product a run of whole image rows,
    # so the shifted sums below read and write contiguous runs.
    planes = (_tap_weight(weight) @ pixels.t()).view(kh, kw, co, b, h, w)
    out = planes[ph, pw].clone() if bias is None else planes[ph, pw] + bias.view(co, 1, 1, 1)
    for i, j, oh, ow, th, tw in _tap_slices(kh, kw, ph, pw, h, w):
        if (i, j) != (ph, pw):
            out[:, :, oh, ow] += planes[i, j][:, :, th, tw]
    return out.permute(1, 0, 2, 3).contiguous()


class _TapSumConv2dFunction(torch.autograd.Function):
    """:func:`_tap_sum_conv` with its backward written as two products over shifted gradients."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, ph: int, pw: int) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.padding = (ph, pw)
        ctx.has_bias = bias is not None
        return _tap_sum_conv(x, weight, bias, ph, pw)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        ph, pw = ctx.padding
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_b = grad.sum((0, 2, 3)) if ctx.has_bias and need_b else None
        if torch.is_grad_enabled():
            # create_graph=True (a double backward): torch's own differentiable formulas.
            grad_x = (
                torch.nn.grad.conv2d_input(x.shape, weight, grad, padding=(ph, pw))
                if need_x
                else None
            )
            grad_w = (
                torch.nn.grad.conv2d_weight(x, weight.shape, grad, padding=(ph, pw))
                if need_w
                else None
            )
            return grad_x, grad_w, grad_b, None, None
        b, ci, h, w = x.shape
        co, _, kh, kw = weight.shape
        # The gradient of tap (i, j)'s plane is the output gradient shifted back, zero outside.
        shifted = grad.new_zeros(kh, kw, co, b, h, w)
        g = grad.permute(1, 0, 2, 3)
        for i, j, oh, ow, th, tw in _tap_slices(kh, kw, ph, pw, h, w):
            shifted[i, j][:, :, th, tw] = g[:, :, oh, ow]
        shifted = shifted.view(kh * kw * co, b * h * w)
        grad_x = grad_w = None
        if need_x:
            grad_x = (shifted.t() @ _tap_weight(weight)).view(b, h, w, ci).permute(0, 3, 1, 2)
        if need_w:
            pixels = x.permute(0, 2, 3, 1).reshape(b * h * w, ci)
            grad_w = (shifted @ pixels).view(kh, kw, co, ci).permute(2, 3, 0, 1)
        return grad_x, grad_w, grad_b, None, None


class TapSumConv2d(ChannelsLastConv2d):
    r"""A ``Conv2d`` for few output channels: one matrix product for all taps, then shifted sums.

    For a :math:`k_h \times k_w` kernel with stride 1 and "same" zero padding,

    .. math::
        y_{o,r,c} = b_o + \sum_{i,j} P^{(i,j)}_{o,\,r+i-p_h,\,c+j-p_w},
        \qquad P^{(i,j)} = W_{:,:,i,j}\, x ,

    so all :math:`k_h k_w` tap planes :math:`P^{(i,j)}` come from one product of the stacked
    weight :math:`(k_h k_w C_\text{out}) \times C_\text{in}` with the pixels, and the output is
    their sum, each shifted by its tap's offset (zero outside the image). The backward pass is
    the same two products with the output gradient shifted back. Parameters, ``state_dict`` and
    results (up to the order of float sums) are those of ``nn.Conv2d``; a double backward uses
    torch's own convolution gradients.

    The tap sum is taken for batched CPU inputs when the layer has at most 4 output channels,
    stride 1, dilation 1, one group, zero padding of half the (odd) kernel; any other layer or
    input runs as :class:`ChannelsLastConv2d`.

    Why: the last convolution of a coupling's sub-network maps many hidden channels to the few
    channels of a half (e.g. 64 -> 4). oneDNN's kernels use only a sliver of their vector width
    for such outputs, while the stacked product has :math:`k_h k_w` times as many rows
    (BENCHMARKS.md, "Coupling stacks").

    Example:
        >>> import torch
        >>> conv = TapSumConv2d(6, 2, 3, padding=1)
        >>> plain = torch.nn.Conv2d(6, 2, 3, padding=1)
        >>> _ = plain.load_state_dict(conv.state_dict())
        >>> x = torch.randn(3, 6, 5, 5)
        >>> bool(torch.allclose(conv(x), plain(x), atol=1e-5))
        True
    """

    def _tap_sum_applies(self, x: Tensor) -> bool:
        kh, kw = self.kernel_size
        return (
            x.dim() == 4
            and x.device.type == "cpu"
            and self.out_channels <= _TAP_SUM_MAX_OUT
            and self.groups == 1
            and self.padding_mode == "zeros"
            and tuple(self.stride) == (1, 1)
            and tuple(self.dilation) == (1, 1)
            and kh % 2 == 1
            and kw % 2 == 1
            and self.padding == (kh // 2, kw // 2)
        )

    def forward(self, x: Tensor) -> Tensor:
        if not self._tap_sum_applies(x):
            return super().forward(x)
        ph, pw = self.padding  # type: ignore[misc]
        if torch.is_grad_enabled() and (
            x.requires_grad
            or self.weight.requires_grad
            or (self.bias is not None and self.bias.requires_grad)
        ):
            return _TapSumConv2dFunction.apply(x, self.weight, self.bias, ph, pw)
        return _tap_sum_conv(x, self.weight, self.bias, ph, pw)
