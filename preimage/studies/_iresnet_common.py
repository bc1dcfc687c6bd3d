r"""Pieces shared by the i-ResNet studies: a small residual classifier, fixed-point traces,
a plain optimisation loop and the run-directory epilogue (metrics, targets, report).

References:
    Behrmann (thesis), *Invertibility and Domain Knowledge*, chapter 4 (algorithm 1,
    lemma 4.5, figures 4.2-4.4) and appendix A.1 (injective padding, invertible downsampling,
    3-1-3 convolution branches).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from preimage.models.residual import ResidualClassifier, plain_conv_branch
from preimage.nn.base import InvertibleSequential
from preimage.nn.iresblock import IResBlock
from preimage.nn.spectral import converge_spectral
from preimage.report import Report
from preimage.runs import RunDir
from preimage.studies.base import StudyConfig

__all__ = [
    "ResidualClassifier",
    "Target",
    "accuracy",
    "begin_run",
    "converge_spectral",
    "finish_run",
    "fixed_point_trace",
    "invert_with_iterations",
    "load_images",
    "load_train_test",
    "plain_conv_branch",
    "train_classifier",
    "train_steps",
]


@dataclass(frozen=True)
class Target:
    """A quantitative target of a study and whether the run met it.

    Attributes:
        name: short name (a metrics key gets ``target_<name>_met``).
        value: the measured value.
        goal: the target in words, e.g. ``"<= 30"``.
        met: whether ``value`` meets the goal.
    """

    name: str
    value: float | int | bool | str
    goal: str
    met: bool


def _rows(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1).norm(dim=1)


def invert_with_iterations(body: InvertibleSequential, z: Tensor, n_iter: int) -> Tensor:
    r"""Invert ``body`` with exactly ``n_iter`` fixed-point steps per residual block.

    Unlike :meth:`IResBlock.inverse` there is no stopping rule and no Lipschitz requirement,
    so it also runs (and may diverge) on unconstrained ResNets (thesis algorithm 1 with a
    fixed budget, as in figure 4.4).

    Example:
        >>> net = ResidualClassifier((1, 4, 4), n_blocks=1, hidden=4, coeff=0.5).eval()
        >>> x = torch.randn(2, 1, 4, 4)
        >>> with torch.no_grad():
        ...     z, _ = net.body(x)
        ...     x_rec = invert_with_iterations(net.body, z, 40)
        >>> bool((x_rec - x).abs().max() < 1e-5)
        True
    """
    with torch.no_grad():
        for layer in reversed(list(body)):
            if isinstance(layer, IResBlock):
                y = z
                for _ in range(n_iter):
                    z = y - layer.g(z)
            else:
                z = layer.inverse(z)
    return z


def fixed_point_trace(
    g: Callable[[Tensor], Tensor], x: Tensor, lip: float, n_iter: int
) -> tuple[np.ndarray, np.ndarray]:
    r"""True error and a-posteriori bound of each fixed-point step inverting ``x + g(x)``.

    Starting from :math:`x^{[0]} = y = x + g(x)`, step :math:`k` gives the worst sample's
    :math:`\|x - x^{[k]}\|_2` and its lemma-4.5 bound
    :math:`\min(L^k\|x^{[1]}-x^{[0]}\|, L\|x^{[k]}-x^{[k-1]}\|)/(1-L)`.

    Returns:
        ``(errors, bounds)``, two arrays of length ``n_iter``; the bound of a sample is only
        a bound when ``lip`` bounds :math:`\mathrm{Lip}(g)`; ``nan`` when ``lip >= 1``.

    References:
        Behrmann (thesis), *Invertibility and Domain Knowledge*, algorithm 1, lemma 4.5.

    Example:
        >>> errors, bounds = fixed_point_trace(lambda v: 0.5 * v, torch.ones(1, 2), 0.5, 5)
        >>> bool((errors <= bounds).all()), bool(errors[-1] < errors[0])
        (True, True)
    """
    errors = np.empty(n_iter)
    bounds = np.full(n_iter, math.nan)
    with torch.no_grad():
        y = x + g(x)
        z = y
        first: Tensor | None = None
        for k in range(1, n_iter + 1):
            z_next = y - g(z)
            step = _rows(z_next - z)
            first = step if first is None else first
            z = z_next
            errors[k - 1] = float(_rows(z - x).max())
            if lip < 1.0:
                bound = torch.minimum(lip**k * first, lip * step) / (1.0 - lip)
                bounds[k - 1] = float(bound.max())
    return errors, bounds


def train_steps(
    parameters: Sequence[nn.Parameter] | Any,
    loss: Callable[[int], Tensor],
    steps: int,
    *,
    lr: float,
    progress: bool = False,
    description: str = "training",
) -> list[float]:
    """Minimise ``loss(step)`` with Adam for ``steps`` steps; returns the loss per step.

    Example:
        >>> w = nn.Parameter(torch.tensor([3.0]))
        >>> history = train_steps([w], lambda _: (w**2).sum(), 50, lr=0.1)
        >>> history[-1] < history[0]
        True
    """
    params = list(parameters)
    optimizer = torch.optim.Adam(params, lr=lr)
    history: list[float] = []
    if progress:
        from rich.progress import track

        iterator = track(range(steps), description=description, transient=True)
    else:
        iterator = range(steps)
    for step in iterator:
        optimizer.zero_grad(set_to_none=True)
        value = loss(step)
        value.backward()
        optimizer.step()
        history.append(float(value.detach()))
    return history


def load_images(
    dataset: str, split: str, *, data_dir: str | None, limit: int | None, device: torch.device
) -> tuple[Tensor, Tensor]:
    """The first ``limit`` images and labels of a dataset split, on ``device``.

    Example:
        >>> x, y = load_images("digits", "test", data_dir=None, limit=5,
        ...                    device=torch.device("cpu"))
        >>> tuple(x.shape), tuple(y.shape)
        ((5, 1, 8, 8), (5,))
    """
    from preimage.data import load_dataset

    data = load_dataset(dataset, split, data_dir=data_dir)  # type: ignore[arg-type]
    images, labels = data.images, data.labels
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return images.to(device=device, dtype=torch.float32), labels.to(device)


def load_train_test(
    config: Any, n_test: int | None, device: torch.device
) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """``(train, test)`` image/label pairs of ``config.dataset`` (``n_train``, ``data_dir``).

    Example:
        >>> from types import SimpleNamespace
        >>> cfg = SimpleNamespace(dataset="digits", data_dir=None, n_train=6)
        >>> (x, y), (xt, yt) = load_train_test(cfg, 4, torch.device("cpu"))
        >>> x.shape[0], xt.shape[0]
        (6, 4)
    """
    train = load_images(
        config.dataset, "train", data_dir=config.data_dir, limit=config.n_train, device=device
    )
    test = load_images(
        config.dataset, "test", data_dir=config.data_dir, limit=n_test, device=device
    )
    return train, test


def train_classifier(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    progress: bool = False,
    description: str = "training",
) -> list[float]:
    """Cross-entropy training of ``model.logits`` on random batches; returns the losses.

    Example:
        >>> net = ResidualClassifier((1, 4, 4), n_blocks=1, hidden=4, coeff=0.9)
        >>> x, y = torch.rand(16, 1, 4, 4), torch.randint(0, 10, (16,))
        >>> len(train_classifier(net, x, y, steps=3, batch_size=8, lr=1e-3, seed=0))
        3
    """
    gen = torch.Generator(device="cpu").manual_seed(seed)
    model.train()

    def loss(_: int) -> Tensor:
        idx = torch.randint(0, images.shape[0], (batch_size,), generator=gen).to(images.device)
        logits = model.logits(images[idx])  # type: ignore[operator]
        return nn.functional.cross_entropy(logits, labels[idx])

    history = train_steps(
        model.parameters(), loss, steps, lr=lr, progress=progress, description=description
    )
    model.eval()
    return history


def accuracy(model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 500) -> float:
    """Fraction of correctly classified images (evaluation mode, no gradients).

    Example:
        >>> net = ResidualClassifier((1, 4, 4), n_blocks=1, hidden=4, coeff=0.9)
        >>> 0.0 <= accuracy(net, torch.rand(6, 1, 4, 4), torch.zeros(6, dtype=torch.long)) <= 1
        True
    """
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            logits = model.logits(images[start : start + batch_size])  # type: ignore[operator]
            correct += int((logits.argmax(1) == labels[start : start + batch_size]).sum())
    return correct / max(1, images.shape[0])


def begin_run(config: StudyConfig, out_dir: str | os.PathLike[str], argv: Any, name: str) -> RunDir:
    """Create the run directory and write ``config.json``."""
    run = RunDir(out_dir)
    run.write_config(asdict(config), argv=argv, seed=config.seed, command=f"run {name}")
    return run


def finish_run(
    run: RunDir,
    config: StudyConfig,
    *,
    title: str,
    intro: str,
    metrics: Mapping[str, Any],
    targets: Sequence[Target],
    figures: Sequence[tuple[str, str]],
    tables: Sequence[tuple[str, Sequence[Mapping[str, Any]]]] = (),
) -> dict[str, Any]:
    """Write ``metrics.json`` and ``report.html``, print a summary and return the metrics.

    Each target adds ``target_<name>_met`` to the metrics. ``figures`` are ``(file name in
    figures/, caption)`` pairs, ``tables`` are ``(title, rows)`` pairs.
    """
    out: dict[str, Any] = dict(metrics)
    for target in targets:
        out[f"target_{target.name}_met"] = bool(target.met)
    run.write_metrics(out)
    report = Report(title)
    report.add_text(intro)
    report.add_heading("Targets")
    report.add_table(
        [
            {"target": t.name, "value": t.value, "goal": t.goal, "met": "yes" if t.met else "NO"}
            for t in targets
        ]
    )
    report.add_heading("Figures")
    for name, caption in figures:
        report.add_figure(run.figures / name, caption)
    for table_title, rows in tables:
        report.add_table(list(rows), title=table_title)
    report.add_heading("Metrics")
    report.add_metrics(out)
    report.add_config(asdict(config))
    report.write(run.report_path)
    print(f"{title} [{config.budget}] -> {run.path}")
    for t in targets:
        print(f"  {t.name}: {t.value} (goal {t.goal}) {'met' if t.met else 'NOT met'}")
    return out
