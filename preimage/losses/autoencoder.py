r"""Alternating autoencoder and classifier updates, the InvNet training scheme of section 4.2.

The paper makes the LeNet-300-100 feature map :math:`F` of its InvNet (approximately)
invertible by training a decoder :math:`D` beside it: "at each step during the training
process, we update the autoencoder :math:`F + D` and the InvNet :math:`F + w` alternatively".
:class:`AlternatingAutoencoderLoss` does exactly that through the trainer's ``loss_fn`` hook:
odd training calls return the classification objective (any ``loss_fn``, e.g.
:class:`~preimage.losses.info_reg.InformationRegularizedLoss`), even calls the reconstruction
error :math:`\lVert D(F(x)) - x\rVert^2`. Both are measured on every call (the
other one without gradients), so the per-epoch averages of the trainer cover all steps.

Deviation, and why: the paper does not name the reconstruction loss nor say whether both
updates share an optimiser; we use the squared error summed over the pixels of an image and
averaged over the batch (:func:`reconstruction_error`), on the scale of the per-image
cross-entropy (a per-pixel mean is :math:`d` times smaller and left the decoder almost untrained
at the paper's learning rate), and the trainer's one optimiser (SGD, learning rate 0.1 decayed
by 0.7 every 10 epochs, appendix E).

References:
    Anonymous (2019), *Information Regularized Neural Networks* (ICLR 2019 submission),
    section 4.2 and appendix E.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from preimage.errors import ConfigError
from preimage.train.loop import LossFn

__all__ = ["AlternatingAutoencoderLoss", "Autoencoder", "reconstruction_error"]


@runtime_checkable
class Autoencoder(Protocol):
    """A model with an encoder ``features(x) -> (B, d)`` and a decoder ``decode(f) -> x``."""

    def features(self, x: Tensor) -> Tensor:
        """The code :math:`F(x)`."""
        ...

    def decode(self, features: Tensor) -> Tensor:
        """The reconstruction :math:`D(F(x))`, shaped like ``x``."""
        ...


def reconstruction_error(reconstruction: Tensor, x: Tensor) -> Tensor:
    r"""Batch mean of the per-image squared error :math:`\lVert D(F(x)) - x\rVert_2^2`.

    Example:
        >>> float(reconstruction_error(torch.ones(2, 1, 2, 2), torch.zeros(2, 1, 2, 2)))
        4.0
    """
    return (reconstruction - x).pow(2).reshape(x.shape[0], -1).sum(dim=1).mean()


class AlternatingAutoencoderLoss(nn.Module):
    r"""Alternate a classification ``loss_fn`` with the autoencoder's reconstruction error.

    Args:
        classifier_loss: ``loss_fn(model, x, y) -> (loss, metrics)`` of the classifier steps;
            an ``nn.Module`` loss becomes a submodule (checkpointed and moved with this one).
        recon_weight: factor of the reconstruction error in its steps.

    Example:
        >>> from preimage.models import InvNet
        >>> from preimage.train import cross_entropy_loss
        >>> model = InvNet((1, 8, 8), 10)
        >>> alt = AlternatingAutoencoderLoss(cross_entropy_loss)
        >>> x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
        >>> _, first = alt(model, x, y)
        >>> _, second = alt(model, x, y)
        >>> first["phase"], second["phase"], sorted(second)
        (0.0, 1.0, ['accuracy', 'loss', 'phase', 'recon'])
    """

    steps: Tensor

    def __init__(self, classifier_loss: LossFn, *, recon_weight: float = 1.0) -> None:
        super().__init__()
        if not callable(classifier_loss):
            raise ConfigError("classifier_loss must be a loss_fn(model, x, y)")
        if not recon_weight > 0:
            raise ConfigError(f"recon_weight must be > 0, got {recon_weight!r}")
        self.classifier_loss = classifier_loss
        self.recon_weight = float(recon_weight)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, float]]:
        if not isinstance(model, Autoencoder):
            raise ConfigError(f"{type(model).__name__} needs features(x) and decode(f) methods")
        training = model.training and torch.is_grad_enabled()
        reconstruct = training and int(self.steps) % 2 == 1
        with torch.set_grad_enabled(training and not reconstruct):
            loss, metrics = self.classifier_loss(model, x, y)
        with torch.set_grad_enabled(reconstruct):
            recon = reconstruction_error(model.decode(model.features(x)), x)
        if training:
            self.steps += 1
        out = {**metrics, "recon": float(recon.detach()), "phase": float(reconstruct)}
        if reconstruct:
            out["loss"] = float(recon.detach())
            return self.recon_weight * recon, out
        return loss, out
