r"""The information plane: :math:`(I(X;T_j), I(T_j;Y))` of every layer, epoch by epoch.

:class:`InformationPlane` is a :class:`~preimage.train.Trainer` callback. At the start of
training and after every ``every``-th epoch it runs a fixed probe set (the paper: 2 000
training inputs with the labels the model is trained on) through the model in eval mode,
captures each layer's output with forward hooks, re-fits an :class:`AdaptiveBinner` (30
equal-mass bins per layer, the paper's scheme, recomputed every epoch) and records both
coordinates by :func:`~preimage.information.binning.binned_information`. Memorisation shows up
as the absence of the compression phase (:math:`I(X;T)` of the last layers falling after the
fitting phase) under random labels.

References:
    Galloway et al. (2018), *A Rate-Distortion Theory of Adversarial Examples*, section 4.2,
    figure 3. Shwartz-Ziv & Tishby (2017), *Opening the Black Box of Deep Neural Networks via
    Information*, section 3.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from preimage.errors import ConfigError, ShapeError
from preimage.information.binning import AdaptiveBinner, binned_information
from preimage.information.units import Unit
from preimage.nn.classifier import logits_of
from preimage.train.loop import Callback

if TYPE_CHECKING:
    from preimage.train.loop import Trainer

__all__ = ["InformationPlane", "layer_activations"]


def _default_layers(model: nn.Module) -> dict[str, nn.Module]:
    layers_fn = getattr(model, "layers", None)
    if not callable(layers_fn):
        raise ConfigError(
            f"{type(model).__name__} has no layers() method; pass layers={{name: module}}"
        )
    layers = layers_fn()
    if not isinstance(layers, Mapping) or not layers:
        raise ConfigError(f"{type(model).__name__}.layers() must return a non-empty mapping")
    return dict(layers)


@torch.no_grad()
def layer_activations(
    model: nn.Module, x: Tensor, layers: Mapping[str, nn.Module], batch_size: int = 500
) -> dict[str, Tensor]:
    """Outputs of ``layers`` (flattened to ``(n, units)``, on the CPU) for inputs ``x``.

    The model runs in eval mode (batch norm uses its running statistics); its mode is restored.

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> acts = layer_activations(net, torch.zeros(5, 3), {"relu": net[1], "out": net[2]})
        >>> {k: tuple(v.shape) for k, v in acts.items()}
        {'relu': (5, 4), 'out': (5, 2)}
    """
    captured: dict[str, list[Tensor]] = {name: [] for name in layers}

    def hook_for(name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if not isinstance(output, Tensor):
                raise ShapeError(f"layer {name!r} returned {type(output).__name__}, not a tensor")
            captured[name].append(output.detach().reshape(output.shape[0], -1).cpu())

        return hook

    handles = [m.register_forward_hook(hook_for(name)) for name, m in layers.items()]
    was_training = model.training
    model.eval()
    device = next((p.device for p in model.parameters()), x.device)
    try:
        for chunk in x.split(batch_size):
            logits_of(model, chunk.to(device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return {name: torch.cat(parts) for name, parts in captured.items()}


class InformationPlane(Callback):
    """Records :math:`I(X;T_j)` and :math:`I(T_j;Y)` per layer on a fixed probe set.

    Args:
        probe_x: probe inputs (the paper: 2 000 training inputs).
        probe_y: their labels, those the model is trained on (random labels for memorisation).
        layers: ``{name: module}`` whose outputs are the :math:`T_j` (default: the model's
            ``layers()``, e.g. :meth:`preimage.models.MLP.layers`).
        binner: discretisation (default: ``AdaptiveBinner(30, "layer", "quantile")``).
        every: measure every ``every`` epochs (and always before training and at the last epoch
            of ``fit``).
        unit: ``"nats"`` or ``"bits"``.

    Attributes:
        history: one dict per measurement:
            ``{"epoch": e, "layer": name, "i_xt": ..., "i_ty": ...}`` (epoch 0: before training).
        seconds: wall time of each measurement (the callback's overhead).

    References:
        Galloway et al. (2018), section 4.2, figure 3.

    Example:
        >>> from preimage.models import MLP
        >>> from preimage.train import TrainConfig, Trainer
        >>> x, y = torch.rand(64, 1, 4, 4), torch.randint(0, 2, (64,))
        >>> plane = InformationPlane(x, y)
        >>> cfg = TrainConfig(epochs=1, batch_size=16, device="cpu", max_shift=0)
        >>> _ = Trainer(MLP((1, 4, 4), 2, widths=(8,)), (x, y), None, cfg, callbacks=[plane],
        ...             progress=False).fit()
        >>> [(h["epoch"], h["layer"]) for h in plane.history]
        [(0, 'layer1'), (0, 'output'), (1, 'layer1'), (1, 'output')]
    """

    def __init__(
        self,
        probe_x: Tensor,
        probe_y: Tensor,
        layers: Mapping[str, nn.Module] | None = None,
        *,
        binner: AdaptiveBinner | None = None,
        every: int = 1,
        unit: Unit = "bits",
    ) -> None:
        if probe_x.shape[0] != probe_y.shape[0]:
            raise ShapeError(
                f"probe_x and probe_y must pair up: {probe_x.shape[0]} vs {probe_y.shape[0]}"
            )
        if every < 1:
            raise ConfigError(f"every must be >= 1, got {every}")
        self.probe_x = probe_x
        self.probe_y = probe_y.detach().cpu().numpy()
        self._given = None if layers is None else dict(layers)
        self.binner = AdaptiveBinner() if binner is None else binner
        self.every = every
        self.unit: Unit = unit
        self.history: list[dict[str, Any]] = []
        self.seconds: list[float] = []

    def measure(self, model: nn.Module, epoch: int) -> list[dict[str, Any]]:
        """Measure every layer now and append the rows (tagged ``epoch``) to :attr:`history`."""
        start = time.perf_counter()
        layers = _default_layers(model) if self._given is None else self._given
        acts = layer_activations(model, self.probe_x, layers)
        ids = np.arange(self.probe_x.shape[0])
        rows = []
        for name, t in acts.items():
            i_xt, i_ty = binned_information(
                t, ids, self.probe_y, binner=self.binner, unit=self.unit
            )
            rows.append({"epoch": epoch, "layer": name, "i_xt": i_xt, "i_ty": i_ty})
        self.history.extend(rows)
        self.seconds.append(time.perf_counter() - start)
        return rows

    def on_train_start(self, trainer: Trainer) -> None:
        if not trainer.history:
            self.measure(trainer.model, 0)

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        if epoch % self.every == 0 or epoch == trainer.config.epochs:
            self.measure(trainer.model, epoch)

    def curves(self) -> dict[str, dict[str, np.ndarray]]:
        """``{layer: {"epoch", "i_xt", "i_ty"}}`` arrays in measurement order."""
        out: dict[str, dict[str, list[float]]] = {}
        for row in self.history:
            entry = out.setdefault(row["layer"], {"epoch": [], "i_xt": [], "i_ty": []})
            for key in ("epoch", "i_xt", "i_ty"):
                entry[key].append(row[key])
        return {k: {kk: np.asarray(vv) for kk, vv in v.items()} for k, v in out.items()}
