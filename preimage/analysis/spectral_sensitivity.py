r"""Sensitivity of a spectrum classifier in the spectral domain, averaged per class.

For a classifier with logits :math:`f_c(x)` the sensitivity map of a spectrum :math:`x` of class
:math:`c` is :math:`\partial f_c(x) / \partial x \in \mathbb{R}^{n_{bins}}`. Unlike image
features, peaks and isotope patterns sit at fixed positions of the m/z axis, so these maps can
be averaged over all spectra of a class into one global interpretation per class (thesis
section 7.5, "Interpretation of models"); bins where the average is large in magnitude are the
ones the model relies on.

References:
    Behrmann (thesis), *Invertibility and Domain Knowledge*, section 7.5; Behrmann et al.
    (2018), *Deep learning for tumor classification in imaging mass spectrometry*,
    Bioinformatics 34(7) (sensitivity analysis).
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor, nn

from preimage.errors import ShapeError

__all__ = ["class_sensitivity"]


def class_sensitivity(
    model: nn.Module,
    spectra: ArrayLike | Tensor,
    labels: ArrayLike,
    *,
    num_classes: int | None = None,
    batch_size: int = 256,
) -> np.ndarray:
    r"""Mean input gradient of the true class's logit, per class.

    Args:
        model: maps ``(batch, 1, n_bins)`` to logits; evaluated in its current mode (call
            ``.eval()`` first to switch off dropout and use batch-norm statistics).
        spectra: ``(n_spots, n_bins)``.
        labels: class of each spot.
        num_classes: rows of the result (default: largest label + 1).
        batch_size: spectra per backward pass.

    Returns:
        ``(num_classes, n_bins)`` float64; row :math:`c` averages
        :math:`\partial f_c / \partial x` over the spectra of class :math:`c` (zeros for an
        absent class).

    Example:
        >>> lin = nn.Sequential(nn.Flatten(), nn.Linear(3, 2, bias=False))
        >>> with torch.no_grad():
        ...     _ = lin[1].weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 2.0]]))
        >>> class_sensitivity(lin, np.ones((4, 3)), [0, 1, 1, 0]).tolist()
        [[1.0, 0.0, 0.0], [0.0, 0.0, 2.0]]
    """
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    x = torch.as_tensor(np.asarray(spectra) if not isinstance(spectra, Tensor) else spectra)
    y = torch.as_tensor(np.asarray(labels)).long().reshape(-1)
    if x.dim() != 2 or x.shape[0] != y.numel():
        raise ShapeError("spectra must be (n_spots, n_bins) with one label per spot")
    n_classes = int(y.max()) + 1 if num_classes is None else num_classes
    total = torch.zeros(n_classes, x.shape[1], dtype=torch.float64)
    for xb, yb in zip(x.split(batch_size), y.split(batch_size), strict=True):
        inp = xb.to(device=device, dtype=dtype).unsqueeze(1).requires_grad_(True)
        logits = model(inp)
        chosen = logits.gather(1, yb.to(device)[:, None]).sum()
        (grad,) = torch.autograd.grad(chosen, inp)
        total.index_add_(0, yb, grad[:, 0].detach().to("cpu", torch.float64))
    counts = torch.bincount(y, minlength=n_classes).clamp(min=1).to(torch.float64)
    return (total / counts[:, None]).numpy()
