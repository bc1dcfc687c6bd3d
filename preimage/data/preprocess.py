r"""The SVHN preprocessing of section 4.3: grayscale, then PCA to 400 components and ZCA.

"We first convert from RGB to grayscale (NTSC). We also apply PCA, retaining the top 400
principal components, and then a zero-phase whitening (ZCA) to linearly decorrelate
neighboring pixels." :func:`grayscale` uses the NTSC (ITU-R BT.601) luma weights;
:class:`ZCAWhitener` fits scikit-learn's :class:`~sklearn.decomposition.PCA` on the training
images and maps an image :math:`x` to

.. math:: U_k \operatorname{diag}(\lambda_k + \epsilon)^{-1/2} U_k^\top (x - \mu),

the ZCA transform restricted to the top :math:`k` components, which keeps the image layout
(zero phase: the whitened image still looks like the image, with edges emphasised).

Deviation: the paper gives no regulariser :math:`\epsilon`; the default ``1e-2`` (in units of
the pixel variance) keeps the weakest retained components from being amplified without bound.

References:
    Galloway et al. (2018), *A Rate-Distortion Theory of Adversarial Examples*, section 4.3.
    Bell & Sejnowski (1997), *The "independent components" of natural scenes are edge filters*.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.decomposition import PCA
from torch import Tensor

from preimage.errors import ConfigError, ShapeError

__all__ = ["NTSC_WEIGHTS", "ZCAWhitener", "grayscale"]

NTSC_WEIGHTS: tuple[float, float, float] = (0.299, 0.587, 0.114)
"""Luma weights of R, G, B (NTSC / ITU-R BT.601)."""


def grayscale(images: Tensor) -> Tensor:
    """``(N, 3, H, W)`` RGB to ``(N, 1, H, W)`` NTSC luma.

    Example:
        >>> white = torch.ones(1, 3, 2, 2)
        >>> grayscale(white).shape, round(float(grayscale(white)[0, 0, 0, 0]), 6)
        (torch.Size([1, 1, 2, 2]), 1.0)
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ShapeError(f"grayscale takes (N, 3, H, W) images, got {tuple(images.shape)}")
    w = torch.tensor(NTSC_WEIGHTS, dtype=images.dtype, device=images.device)
    return (images * w[None, :, None, None]).sum(dim=1, keepdim=True)


class ZCAWhitener:
    """PCA to ``n_components`` then zero-phase whitening, fitted on training images.

    Args:
        n_components: principal components kept (the paper: 400).
        eps: added to each component's variance before the inverse square root.

    Example:
        >>> gen = torch.Generator().manual_seed(0)
        >>> x = torch.rand(200, 1, 4, 4, generator=gen)
        >>> zca = ZCAWhitener(n_components=8).fit(x)
        >>> zca.transform(x).shape
        torch.Size([200, 1, 4, 4])
    """

    def __init__(self, n_components: int = 400, eps: float = 1e-2) -> None:
        if n_components < 1:
            raise ConfigError(f"n_components must be >= 1, got {n_components}")
        if eps < 0:
            raise ConfigError(f"eps must be >= 0, got {eps}")
        self.n_components = n_components
        self.eps = eps
        self.pca: PCA | None = None

    def fit(self, images: Tensor) -> ZCAWhitener:
        """Fit the PCA on ``(N, ...)`` images; returns ``self``."""
        flat = images.reshape(images.shape[0], -1).detach().cpu().double().numpy()
        if self.n_components > min(flat.shape):
            raise ConfigError(
                f"n_components={self.n_components} exceeds min(samples, pixels)={min(flat.shape)}"
            )
        self.pca = PCA(n_components=self.n_components, svd_solver="full").fit(flat)
        return self

    def transform(self, images: Tensor) -> Tensor:
        """Whitened images, same shape, dtype and device as ``images``."""
        if self.pca is None:
            raise ConfigError("ZCAWhitener.transform called before fit")
        flat = images.reshape(images.shape[0], -1).detach().cpu().double().numpy()
        if flat.shape[1] != self.pca.components_.shape[1]:
            raise ShapeError(
                f"fitted on {self.pca.components_.shape[1]} pixels, got {flat.shape[1]}"
            )
        comps = self.pca.components_
        scores = (
            (flat - self.pca.mean_) @ comps.T / np.sqrt(self.pca.explained_variance_ + self.eps)
        )
        out = torch.from_numpy(scores @ comps).to(dtype=images.dtype, device=images.device)
        return out.reshape(images.shape)
