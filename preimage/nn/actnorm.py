r"""Activation normalisation with data-dependent initialisation (Glow).

:math:`y = (x + b) \odot e^{s}` per channel, so
:math:`\log|\det J| = N_{\text{spatial}} \sum_c s_c`.

References:
    Kingma & Dhariwal (2018), *Glow*, section 3.1 (actnorm).
    Jacobsen et al. (2019), *Excessive Invariance Causes Adversarial Vulnerability*, appendix D.2
    ("additional actnorm ... between each layer").
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from preimage.nn.base import InvertibleModule, check_shape

__all__ = ["ActNorm"]


class ActNorm(InvertibleModule):
    r"""Per-channel affine normalisation whose first training batch sets zero mean, unit variance.

    Works on flat ``(B, C)`` and image ``(B, C, H, W)`` batches. The initialisation happens on
    the first forward pass in training mode; the ``initialized`` buffer is part of the
    ``state_dict``, so a loaded model is never re-initialised. The forward pass reads a Python
    copy of that flag (kept in sync on initialisation and on ``load_state_dict``), not the
    buffer: reading a tensor there would cost a device synchronisation per layer and step.

    Args:
        num_features: number of channels ``C``.
        eps: added to the standard deviation at initialisation, so constant channels stay finite.

    Example:
        >>> import torch
        >>> layer = ActNorm(3)
        >>> y, logdet = layer(3.0 + 2.0 * torch.randn(512, 3, 4, 4))
        >>> bool(y.mean().abs() < 0.05), bool((y.std() - 1).abs() < 0.05)
        (True, True)
    """

    exact_inverse = True

    def __init__(self, num_features: int, *, eps: float = 1e-6) -> None:
        super().__init__()
        self.num_features = int(num_features)
        self.eps = eps
        self.loc = nn.Parameter(torch.zeros(num_features))
        self.log_scale = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("initialized", torch.tensor(0, dtype=torch.uint8))
        self._initialized = False

    def _view(self, p: Tensor, x: Tensor) -> Tensor:
        return p.view(1, -1, *([1] * (x.dim() - 2)))

    @torch.no_grad()
    def _initialize(self, x: Tensor) -> None:
        dims = [0, *range(2, x.dim())]
        mean = x.mean(dim=dims)
        std = x.std(dim=dims, unbiased=False)
        self.loc.copy_(-mean)
        self.log_scale.copy_(-torch.log(std + self.eps))
        self.initialized.fill_(1)
        self._initialized = True

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: object) -> None:  # type: ignore[override]
        super()._load_from_state_dict(state_dict, prefix, *args)  # type: ignore[arg-type]
        self._initialized = bool(self.initialized)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_shape(x, (2, 3, 4), "ActNorm")
        if x.shape[1] != self.num_features:
            from preimage.errors import ShapeError

            raise ShapeError(f"ActNorm({self.num_features}) got {x.shape[1]} channels")
        if self.training and not self._initialized:
            self._initialize(x)
        y = (x + self._view(self.loc, x)) * torch.exp(self._view(self.log_scale, x))
        spatial = x[0, 0].numel()
        logdet = (self.log_scale.sum() * spatial).expand(x.shape[0]).to(x.dtype)
        return y, logdet

    def inverse(self, y: Tensor) -> Tensor:
        return y * torch.exp(-self._view(self.log_scale, y)) - self._view(self.loc, y)
