r"""Signal-to-noise ratio of the stochastic gradients per layer, measured while training.

Section 4.1 of the paper tracks, for every layer's weights :math:`w` and the mini-batch
gradients :math:`g_1, \dots, g_B` of one epoch,

.. math::

    \mathrm{SNR} = \frac{\|\operatorname{mean}(g)\|_2 / \|w\|_2}{\|\operatorname{std}(g)\|_2},

with the mean and the element-wise standard deviation taken over the epoch's batches. The
SNR approaching a constant marks convergence of SGD (figure 2: after about 100 epochs with
batch norm, 1 000 with ReLU, 3 000 with tanh). :class:`GradientSNR` accumulates the moments
with Welford's update, one pass and no stored gradients, from the gradients the optimiser
has just used (after gradient clipping, when configured).

Deviation: the standard deviation is the population one (:math:`\frac1B \sum (g - \bar g)^2`);
the paper does not say, and with hundreds of batches per epoch the choice does not matter.
:math:`\|w\|_2` is taken at the end of the epoch.

References:
    Galloway et al. (2018), *A Rate-Distortion Theory of Adversarial Examples*, section 4.1,
    figure 2. Shwartz-Ziv & Tishby (2017), *Opening the Black Box of Deep Neural Networks via
    Information*, section 3.3. Welford (1962), *Technometrics* 4(3).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from preimage.errors import ConfigError, TrainingError
from preimage.train.loop import Callback

if TYPE_CHECKING:
    from preimage.train.loop import Trainer

__all__ = ["GradientSNR", "RunningMoments", "gradient_snr", "snr_parameters"]


class RunningMoments:
    """Welford's running mean and variance of equally shaped tensors.

    Example:
        >>> m = RunningMoments()
        >>> for g in (torch.tensor([1.0, 0.0]), torch.tensor([3.0, 0.0])):
        ...     m.update(g)
        >>> m.mean.tolist(), m.std.tolist(), m.count
        ([2.0, 0.0], [1.0, 0.0], 2)
    """

    def __init__(self) -> None:
        self.count = 0
        self._mean: Tensor | None = None
        self._m2: Tensor | None = None

    def update(self, value: Tensor) -> None:
        """Add one observation."""
        value = value.detach()
        self.count += 1
        if self._mean is None or self._m2 is None:
            self._mean = value.clone()
            self._m2 = torch.zeros_like(value)
            return
        delta = value - self._mean
        self._mean += delta / self.count
        self._m2 += delta * (value - self._mean)

    @property
    def mean(self) -> Tensor:
        """Mean of the observations so far."""
        if self._mean is None:
            raise ConfigError("RunningMoments has no observations")
        return self._mean

    @property
    def std(self) -> Tensor:
        """Population standard deviation of the observations so far."""
        if self._m2 is None:
            raise ConfigError("RunningMoments has no observations")
        return (self._m2 / self.count).sqrt()


def gradient_snr(mean_grad: Tensor, std_grad: Tensor, weight: Tensor) -> dict[str, float]:
    r"""Signal :math:`\|\bar g\|/\|w\|`, noise :math:`\|\sigma_g\|` and their ratio, the SNR.

    Example:
        >>> out = gradient_snr(torch.tensor([3.0, 4.0]), torch.tensor([0.5, 0.0]),
        ...                    torch.tensor([0.0, 2.0]))
        >>> out["signal"], out["noise"], out["snr"]
        (2.5, 0.5, 5.0)
    """
    signal = float(mean_grad.norm()) / float(weight.norm())
    noise = float(std_grad.norm())
    snr = signal / noise if noise > 0 else float("inf")
    return {"signal": signal, "noise": noise, "snr": snr}


def snr_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The weights the SNR is measured on: every trainable parameter named ``*weight`` with two
    or more dimensions (dense and convolution kernels, not biases nor batch-norm scales), keyed
    by its module's name.

    Example:
        >>> sorted(snr_parameters(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))))
        ['0', '2']
    """
    return {
        name.removesuffix(".weight"): p
        for name, p in model.named_parameters()
        if p.requires_grad and name.endswith("weight") and p.dim() >= 2
    }


class GradientSNR(Callback):
    """A :class:`~preimage.train.Trainer` callback recording each layer's gradient SNR per epoch.

    Args:
        parameters: ``{layer name: weight}`` to follow (default: :func:`snr_parameters` of the
            trained model).

    Attributes:
        history: one dict per finished epoch, ``{"epoch": e, "<layer>": snr, ...}``.
        details: per epoch and layer the signal, noise and SNR (:func:`gradient_snr`).

    References:
        Galloway et al. (2018), section 4.1, figure 2.

    Example:
        >>> from preimage.train import TrainConfig, Trainer
        >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
        >>> snr = GradientSNR()
        >>> _ = Trainer(net, (x, y), None, TrainConfig(epochs=2, batch_size=16, device="cpu",
        ...             max_shift=0, dequantize=False, optimizer="sgd", lr=0.01), callbacks=[snr],
        ...             progress=False).fit()
        >>> [sorted(h) for h in snr.history]
        [['0', '2', 'epoch'], ['0', '2', 'epoch']]
    """

    def __init__(self, parameters: Mapping[str, nn.Parameter] | None = None) -> None:
        self._given = None if parameters is None else dict(parameters)
        self.parameters: dict[str, nn.Parameter] = {}
        self.history: list[dict[str, Any]] = []
        self.details: list[dict[str, Any]] = []
        self._moments: dict[str, RunningMoments] = {}

    def on_train_start(self, trainer: Trainer) -> None:
        self.parameters = snr_parameters(trainer.model) if self._given is None else self._given
        if not self.parameters:
            raise ConfigError("GradientSNR found no weight matrices to follow")

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        self._moments = {name: RunningMoments() for name in self.parameters}

    def on_batch_end(self, trainer: Trainer, step: int, metrics: dict[str, float]) -> None:
        # The gradients stay in .grad after the optimiser step until the next zero_grad.
        for name, p in self.parameters.items():
            if p.grad is None:
                raise TrainingError(f"GradientSNR: layer {name!r} got no gradient")
            self._moments[name].update(p.grad)

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        record: dict[str, Any] = {"epoch": epoch}
        for name, p in self.parameters.items():
            m = self._moments[name]
            values = gradient_snr(m.mean, m.std, p.detach())
            record[name] = values["snr"]
            self.details.append({"epoch": epoch, "layer": name, **values})
        self.history.append(record)
