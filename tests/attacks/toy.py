"""A tiny exact invertible classifier for the attack and loss tests: ``z = W x + b``.

It follows the invertible-classifier contract (``model(x) -> (z, logdet)`` with flat ``z``,
``inverse``, ``split``, ``merge``, ``logits``, ``num_classes``) with closed forms for everything,
so tests can compare against NumPy: ``W = Q diag(s)`` with ``Q`` orthogonal and ``s`` in
``[0.5, 2]`` keeps it well conditioned, and ``log|det W| = sum(log s)``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["AffineInvertibleClassifier"]


class AffineInvertibleClassifier(nn.Module):
    """``z = W flatten(x) + b``; the logits are the first ``num_classes`` entries of ``z``.

    Example:
        >>> import torch
        >>> model = AffineInvertibleClassifier((1, 2, 2), 2, seed=0)
        >>> x = torch.rand(3, 1, 2, 2, dtype=torch.float64)
        >>> z, logdet = model(x)
        >>> z.shape, logdet.shape, bool(torch.allclose(model.inverse(z), x))
        (torch.Size([3, 4]), torch.Size([3]), True)
    """

    def __init__(
        self,
        in_shape: tuple[int, ...],
        num_classes: int,
        *,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        self.in_shape = tuple(in_shape)
        self.num_classes = num_classes
        dim = int(np.prod(self.in_shape))
        rng = np.random.default_rng(seed)
        q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
        scales = rng.uniform(0.5, 2.0, size=dim)
        self.weight = nn.Parameter(torch.tensor(q * scales, dtype=dtype))
        self.bias = nn.Parameter(torch.tensor(0.1 * rng.standard_normal(dim), dtype=dtype))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = x.reshape(x.shape[0], -1) @ self.weight.T + self.bias
        logdet = torch.linalg.slogdet(self.weight)[1].expand(x.shape[0])
        return z, logdet

    def inverse(self, z: Tensor) -> Tensor:
        x = torch.linalg.solve(self.weight, (z - self.bias).T).T
        return x.reshape(z.shape[0], *self.in_shape)

    def split(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return z[:, : self.num_classes], z[:, self.num_classes :]

    def merge(self, z_s: Tensor, z_n: Tensor) -> Tensor:
        return torch.cat((z_s, z_n), dim=1)

    def classify(self, z_s: Tensor) -> Tensor:
        return z_s

    def logits(self, x: Tensor) -> Tensor:
        return self.forward(x)[0][:, : self.num_classes]

    def numpy_params(self) -> tuple[np.ndarray, np.ndarray]:
        """``(W, b)`` as NumPy arrays, for independent references."""
        return self.weight.detach().cpu().numpy(), self.bias.detach().cpu().numpy()
