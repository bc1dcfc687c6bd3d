r"""Invertible 1x1 convolution with an LU-parametrised weight (Glow).

:math:`W = P L (U + \operatorname{diag}(\sigma \odot e^{s}))`, with :math:`P` a fixed
permutation, :math:`L` unit lower-triangular, :math:`U` strictly upper-triangular and
:math:`\sigma` fixed signs, so
:math:`\log|\det J| = N_{\text{spatial}} \sum_c s_c` costs :math:`O(C)`.

References:
    Kingma & Dhariwal (2018), *Glow*, section 3.2 (LU decomposition).
    Jacobsen et al. (2019), *Excessive Invariance Causes Adversarial Vulnerability*, appendix D.2.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from preimage.errors import ShapeError
from preimage.nn.base import InvertibleModule, check_shape

__all__ = ["InvConv1x1"]


class InvConv1x1(InvertibleModule):
    r"""Learned invertible channel mixing, initialised to a random rotation.

    On flat ``(B, C)`` batches it is an invertible linear layer. In evaluation mode, when no
    parameter gradient can be asked for (``torch.no_grad()`` or frozen parameters), :math:`W`
    and :math:`W^{-1}` are cached; the cache is keyed on the version counters and storage of
    the parameters and buffers, so an optimiser step, ``load_state_dict`` or ``.to()`` rebuilds it.

    Args:
        num_channels: number of channels ``C``.
        generator: optional generator for the random orthogonal initialisation.

    Example:
        >>> import torch
        >>> layer = InvConv1x1(4).double()
        >>> x = torch.randn(2, 4, 3, 3, dtype=torch.float64)
        >>> with torch.no_grad():
        ...     y, logdet = layer(x)
        ...     x_rec = layer.inverse(y)
        >>> float((x_rec - x).abs().max()) < 1e-12
        True
    """

    exact_inverse = True

    def __init__(self, num_channels: int, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        c = int(num_channels)
        self.num_channels = c
        q, _ = torch.linalg.qr(torch.randn(c, c, generator=generator, dtype=torch.float64))
        p, lower, upper = torch.linalg.lu(q)
        diag = torch.diagonal(upper)
        # Parameters and buffers take the default dtype, like every torch layer, so a model built
        # under torch.set_default_dtype(torch.float64) is float64 throughout.
        dtype = torch.get_default_dtype()
        self.register_buffer("perm", p.to(dtype))
        self.register_buffer("sign_s", torch.sign(diag).to(dtype))
        self.register_buffer("lower_mask", torch.tril(torch.ones(c, c, dtype=dtype), -1))
        self.lower = nn.Parameter(lower.to(dtype))
        self.upper = nn.Parameter(torch.triu(upper, 1).to(dtype))
        self.log_s = nn.Parameter(torch.log(diag.abs()).to(dtype))
        self._cache: tuple[tuple[object, ...], Tensor, Tensor] | None = None

    def weight(self, dtype: torch.dtype | None = None) -> Tensor:
        """The ``(C, C)`` mixing matrix :math:`W`."""
        eye = torch.eye(self.num_channels, device=self.log_s.device, dtype=self.log_s.dtype)
        lower = self.lower * self.lower_mask + eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        w = self.perm @ lower @ upper
        return w if dtype is None else w.to(dtype)

    def _inverse_weight(self, dtype: torch.dtype) -> Tensor:
        # Invert in float64 at least: W is small (C x C) and its inverse dominates round-trip error.
        wide = torch.float32 if self.log_s.device.type == "mps" else torch.float64
        return torch.linalg.inv(self.weight(wide)).to(dtype)

    def _matrices(self, dtype: torch.dtype, *, need_inverse: bool) -> tuple[Tensor, Tensor | None]:
        """``(W, W^{-1})`` in ``dtype``, from the cache when no parameter gradient is needed."""
        tensors = (self.lower, self.upper, self.log_s, self.perm, self.sign_s, self.lower_mask)
        grads_possible = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
        if self.training or grads_possible:
            return self.weight(dtype), self._inverse_weight(dtype) if need_inverse else None
        key = (dtype, self.log_s.device, *((t.data_ptr(), t._version) for t in tensors))
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self.weight(dtype), self._inverse_weight(dtype))
        return self._cache[1], self._cache[2]

    def _apply_matrix(self, w: Tensor, x: Tensor) -> Tensor:
        if x.dim() == 2:
            return x @ w.T
        return torch.einsum("oc,bc...->bo...", w, x)

    def _check(self, x: Tensor) -> None:
        check_shape(x, (2, 3, 4), "InvConv1x1")
        if x.shape[1] != self.num_channels:
            raise ShapeError(f"InvConv1x1({self.num_channels}) got {x.shape[1]} channels")

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x)
        w, _ = self._matrices(x.dtype, need_inverse=False)
        spatial = x[0, 0].numel()
        logdet = (self.log_s.sum() * spatial).to(x.dtype).expand(x.shape[0])
        return self._apply_matrix(w, x), logdet

    def inverse(self, y: Tensor) -> Tensor:
        self._check(y)
        _, w_inv = self._matrices(y.dtype, need_inverse=True)
        return self._apply_matrix(w_inv, y)  # type: ignore[arg-type]
