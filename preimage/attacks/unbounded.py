r"""Unbounded attacks for the fault-tolerance curves, Gaussian noise at a given SNR, and
label-to-input prototypes.

Section 4.4 characterises fault tolerance by the information :math:`I(T;Y)` a model still
conveys about the label as the SNR of the input falls. The adversarial "noise" comes from
"iteratively minimizing the loss w.r.t. the input with a step size of 1e-2, then either taking
the real L2-normalized gradient or the signed gradient": :class:`UnboundedGradientAttack`
takes ``steps`` such steps up the cross-entropy of the true label, without any budget or
early stop, and returns the whole trajectory, so one run sweeps every SNR. The baseline is
white Gaussian noise scaled to a target SNR (:func:`gaussian_noise_at_snr`).

Figure 4(b) transmits "in the reverse direction": :func:`class_prototypes` starts from
:math:`N(\mu, \sigma^2)` and descends each label's cross-entropy with step 1e-2 until the model
gives that label probability 0.9995 ("full confidence to within 3 decimal places").

Deviations: the paper says "σ² as two orders of magnitude less than the population standard
deviation"; we read it as :math:`\sigma = 10^{-2} \times` the per-pixel standard deviation
(``sigma_scale``). The prototype steps are plain gradient steps :math:`x \leftarrow x - 10^{-2}
\nabla_x L` (the text gives the step size only).

References:
    Galloway et al. (2018), *A Rate-Distortion Theory of Adversarial Examples*, section 4.4,
    figures 4(b) and 5. Nguyen, Yosinski, Clune (2015), *Deep Neural Networks are Easily
    Fooled* (gradient-crafted images from noise).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from preimage.attacks.base import Attack, AttackResult, Bounds, eval_mode
from preimage.errors import ConfigError, ShapeError
from preimage.nn.classifier import logits_of

__all__ = ["UnboundedGradientAttack", "class_prototypes", "gaussian_noise_at_snr"]


def _per_sample_norm(v: Tensor) -> Tensor:
    return v.reshape(v.shape[0], -1).norm(dim=1).reshape(-1, *([1] * (v.dim() - 1)))


class UnboundedGradientAttack(Attack[AttackResult]):
    r"""``steps`` untargeted gradient steps with no budget; returns the trajectory.

    Each step is :math:`x \leftarrow x + \eta\, g / \|g\|_2` (``norm="l2"``) or
    :math:`x \leftarrow x + \eta \operatorname{sign}(g)` (``norm="linf"``), with :math:`g` the
    gradient of the cross-entropy of the true label and :math:`\eta` = ``step``.

    Args:
        norm: ``"l2"`` or ``"linf"`` (figure 5's "L2" and "L∞").
        step: :math:`\eta` (the paper: 1e-2).
        steps: number of steps.
        record_every: keep every ``record_every``-th iterate in the trajectory.
        bounds: clip every iterate into this box; ``None`` (default) for unbounded inputs
            such as whitened images.

    The result's ``x_adv`` is the last iterate, ``success`` whether it is misclassified,
    ``distance`` its :math:`L_2` distance; ``extras["trajectory"]`` is a ``(R, B, ...)`` tensor
    of recorded iterates (the inputs first) and ``extras["steps"]`` their step numbers.

    References:
        Galloway et al. (2018), section 4.4, figure 5.

    Example:
        >>> net = nn.Linear(2, 2)
        >>> attack = UnboundedGradientAttack(norm="linf", step=0.5, steps=4, record_every=2)
        >>> r = attack(net, torch.zeros(3, 2), torch.zeros(3, dtype=torch.long))
        >>> tuple(r.extras["trajectory"].shape), r.extras["steps"]
        ((3, 3, 2), [0, 2, 4])
    """

    def __init__(
        self,
        *,
        norm: Literal["l2", "linf"] = "l2",
        step: float = 1e-2,
        steps: int = 100,
        record_every: int = 1,
        bounds: Bounds | None = None,
    ) -> None:
        super().__init__(bounds=Bounds() if bounds is None else bounds)
        if norm not in ("l2", "linf"):
            raise ConfigError(f"unknown norm {norm!r}; use 'l2' or 'linf'")
        if not step > 0 or steps < 0 or record_every < 1:
            raise ConfigError(
                f"need step > 0, steps >= 0, record_every >= 1; got {step}, {steps}, {record_every}"
            )
        self.norm = norm
        self.step = float(step)
        self.steps = steps
        self.record_every = record_every
        self.clip = bounds is not None

    def validate_inputs(self, inputs: Tensor, name: str = "inputs") -> Tensor:
        """The base checks; without ``bounds`` the box is any one that holds finite inputs."""
        if self.clip or not isinstance(inputs, Tensor) or not inputs.is_floating_point():
            return super().validate_inputs(inputs, name)
        finite = inputs.numel() > 0 and bool(torch.isfinite(inputs).all())
        saved = self.bounds
        if finite:
            self.bounds = Bounds(float(inputs.min()) - 1.0, float(inputs.max()) + 1.0)
        try:
            return super().validate_inputs(inputs, name)
        finally:
            self.bounds = saved

    def run(self, model: nn.Module, inputs: Tensor, labels: Tensor) -> AttackResult:
        if labels.shape != (inputs.shape[0],):
            raise ShapeError(
                f"labels must have shape ({inputs.shape[0]},), got {tuple(labels.shape)}"
            )
        labels = labels.to(device=inputs.device, dtype=torch.long)
        x = inputs.clone()
        trajectory, recorded = [x.clone()], [0]
        for t in range(1, self.steps + 1):
            x.requires_grad_(True)
            loss = F.cross_entropy(logits_of(model, x), labels, reduction="sum")
            (grad,) = torch.autograd.grad(loss, x)
            with torch.no_grad():
                if self.norm == "l2":
                    direction = grad / _per_sample_norm(grad).clamp_min(1e-30)
                else:
                    direction = grad.sign()
                x = x.detach() + self.step * direction
                if self.clip:
                    x = self.bounds.clip(x)
            if t % self.record_every == 0 or t == self.steps:
                trajectory.append(x.clone())
                recorded.append(t)
        with torch.no_grad():
            success = logits_of(model, x).argmax(dim=1) != labels
            distance = (x - inputs).reshape(x.shape[0], -1).norm(dim=1)
        return AttackResult(
            x_adv=x,
            success=success,
            distance=distance,
            extras={"trajectory": torch.stack(trajectory), "steps": recorded},
        )


def gaussian_noise_at_snr(
    x: Tensor,
    snr_db: float,
    *,
    definition: Literal["ratio", "one_plus"] = "ratio",
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""``x`` plus white Gaussian noise scaled per sample to the given SNR in dB.

    The noise direction is :math:`N(0, I)`; its norm is set so that
    :func:`~preimage.information.gaussian.snr_db` of the result is exactly ``snr_db``:
    :math:`\|\delta\| = \|x\| / 10^{s/20}` (``"ratio"``) or
    :math:`\|x\| / (10^{s/20} - 1)` (``"one_plus"``, which needs :math:`s > 0`).

    References:
        Galloway et al. (2018), section 4.4 (figure 5, "Gauss").

    Example:
        >>> from preimage.information import snr_db
        >>> x = torch.ones(2, 8)
        >>> noisy = gaussian_noise_at_snr(x, 10.0, generator=torch.Generator().manual_seed(0))
        >>> [round(v, 6) for v in snr_db(x, noisy - x).tolist()]
        [10.0, 10.0]
    """
    ratio = 10.0 ** (snr_db / 20.0)
    if definition == "one_plus":
        if ratio <= 1.0:
            raise ConfigError(f"the one_plus SNR is always > 0 dB, got {snr_db}")
        ratio -= 1.0
    elif definition != "ratio":
        raise ConfigError(f"unknown definition {definition!r}; use 'ratio' or 'one_plus'")
    noise = torch.randn(
        x.shape,
        generator=generator,
        dtype=x.dtype,
        device=generator.device if generator is not None else x.device,
    ).to(x.device)
    scale = _per_sample_norm(x) / (ratio * _per_sample_norm(noise))
    return x + scale * noise


def class_prototypes(
    model: nn.Module,
    mean: Tensor,
    std: Tensor | float,
    num_classes: int,
    *,
    sigma_scale: float = 1e-2,
    step: float = 1e-2,
    confidence: float = 0.9995,
    max_steps: int = 10_000,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""One input per label by gradient descent on that label's cross-entropy (figure 4(b)).

    Args:
        model: the classifier (run in eval mode).
        mean: population mean image :math:`\mu` (shape of one input).
        std: population standard deviation (per pixel or one number).
        num_classes: labels :math:`0..C-1`, one prototype each.
        sigma_scale: start from :math:`N(\mu, (	ext{sigma\_scale} \cdot 	ext{std})^2)`.
        step: gradient step (the paper: 1e-2).
        confidence: stop a label once its softmax probability reaches this (0.9995).
        max_steps: give up after this many steps.
        generator: for the starting noise.

    Returns:
        ``(prototypes (C, ...), steps taken (C,), final confidence (C,))``; a label that did not
        reach ``confidence`` has ``steps == max_steps``.

    References:
        Galloway et al. (2018), section 4.4, figure 4(b).

    Example:
        >>> net = nn.Linear(3, 2)
        >>> protos, steps, conf = class_prototypes(net, torch.zeros(3), 1.0, 2, step=1.0,
        ...                                        generator=torch.Generator().manual_seed(0))
        >>> tuple(protos.shape), bool((conf >= 0.9995).all())
        ((2, 3), True)
    """
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must lie in (0, 1), got {confidence}")
    if num_classes < 1 or max_steps < 1 or not step > 0:
        raise ConfigError("need num_classes >= 1, max_steps >= 1 and step > 0")
    shape = (num_classes, *mean.shape)
    noise = torch.randn(shape, generator=generator, dtype=mean.dtype).to(mean.device)
    x = (
        mean.expand(shape)
        + sigma_scale * torch.as_tensor(std, dtype=mean.dtype).to(mean.device) * noise
    )
    labels = torch.arange(num_classes, device=mean.device)
    steps = torch.full((num_classes,), max_steps, dtype=torch.long)
    with eval_mode(model):
        for t in range(max_steps + 1):
            x = x.detach().requires_grad_(True)
            logits = logits_of(model, x)
            prob = logits.softmax(dim=1).gather(1, labels[:, None])[:, 0].detach()
            done = prob >= confidence
            newly = done.cpu() & (steps == max_steps)
            steps[newly] = t
            if bool(done.all()) or t == max_steps:
                break
            loss = F.cross_entropy(logits, labels, reduction="sum")
            (grad,) = torch.autograd.grad(loss, x)
            with torch.no_grad():
                # Labels that reached the confidence stay where they are.
                x = x - step * grad * (~done).to(grad.dtype).reshape(-1, *([1] * mean.dim()))
    return x.detach(), steps, prob
