r"""The study kit: how every study starts, records its targets and ends.

A study is a short composition (DESIGN.md, "Study"): open a :class:`StudyRun`, call library
pieces, add figures and tables, :meth:`~StudyRun.check` each target and
:meth:`~StudyRun.finish` with the metrics. The kit owns everything around the science:

* the run directory (:class:`~preimage.runs.RunDir`, opened for the kind ``run <study>``, so a
  study never overwrites another kind of run, nor an earlier run of itself unless asked);
* ``config.json`` with the resolved, nested config;
* the device, resolved once from ``config.device``;
* the :class:`~preimage.report.Report`, with a caveat at the top of ``smoke`` runs, whose
  targets are not meaningful;
* ``metrics.json`` (each target adds ``target_<name>_met``), ``report.html`` and one summary
  printed in one format (by the main process only, under ``torchrun``).

Example:
    >>> import tempfile
    >>> from dataclasses import dataclass
    >>> from preimage.studies.base import StudyConfig
    >>> @dataclass(frozen=True)
    ... class Toy(StudyConfig):
    ...     steps: int = 10
    >>> with StudyRun("toy", Toy(budget="cpu"), tempfile.mkdtemp(), echo=False) as study:
    ...     target = study.check("loss", 0.2, "<= 0.5")
    ...     metrics = study.finish({"loss": 0.2})
    >>> target.met, metrics["target_loss_met"]
    (True, True)
"""

from __future__ import annotations

import dataclasses
import math
import operator
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch
from matplotlib.figure import Figure

from preimage.data import load_train_test
from preimage.data.subsets import Pair
from preimage.errors import ConfigError
from preimage.report import Report
from preimage.report.plots import save_figure
from preimage.runs import RunDir
from preimage.studies.base import StudyConfig
from preimage.train.config import resolve_device
from preimage.train.distributed import is_main_process

__all__ = ["SMOKE_CAVEAT", "RunFunction", "StudyRun", "Target", "goal_met", "study_entry"]

SMOKE_CAVEAT = (
    "**Smoke budget.** This run used the `smoke` budget (seconds, for the tests): the models "
    "are tiny and barely trained, so its figures and targets are not meaningful. Run "
    "`--budget cpu` for results."
)

C = TypeVar("C", bound=StudyConfig)

_COMPARATORS: dict[str, Callable[[Any, Any], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
    "==": operator.eq,
    "!=": operator.ne,
}


def goal_met(value: Any, goal: str) -> bool:
    """Whether ``value`` meets a goal written as ``"<op> number"`` (``<=``, ``>=``, ``<``, ...).

    NaN and ``None`` meet no goal.

    Example:
        >>> goal_met(0.3, "<= 0.5"), goal_met(3, "> 5"), goal_met(float("nan"), ">= 0")
        (True, False, False)
    """
    text = goal.strip()
    for symbol in sorted(_COMPARATORS, key=len, reverse=True):
        if text.startswith(symbol):
            try:
                bound = float(text[len(symbol) :].split()[0])
            except (ValueError, IndexError):
                break
            if _missing(value):
                return False
            return bool(_COMPARATORS[symbol](float(value), bound))
    raise ConfigError(f"goal {goal!r} is not '<op> number'; pass met= explicitly")


def _missing(value: Any) -> bool:
    """Whether a measured value is absent (``None``) or NaN, so that it meets no goal."""
    return value is None or (isinstance(value, float) and math.isnan(value))


@dataclasses.dataclass(frozen=True)
class Target:
    """A target of a study: the measured value, the goal in words and whether it was met.

    Attributes:
        name: short name; the metrics get ``target_<name>_met``.
        value: the measured value.
        goal: the goal in words, e.g. ``"<= 0.05"`` or ``"lower than CE"``.
        met: whether ``value`` meets ``goal``.

    Example:
        >>> Target("ce_error", 0.01, "<= 0.05", True).row()["met"]
        'met'
    """

    name: str
    value: Any
    goal: str
    met: bool

    def row(self) -> dict[str, Any]:
        """The target as a report-table row."""
        return {
            "target": self.name,
            "value": self.value,
            "goal": self.goal,
            "met": "met" if self.met else "missed",
        }

    def line(self) -> str:
        """The target as one line of the printed summary."""
        value = f"{self.value:.6g}" if isinstance(self.value, float) else str(self.value)
        return f"  {self.name:40s} {value:>12s}  goal {self.goal:16s} " + (
            "met" if self.met else "MISSED"
        )


class StudyRun:
    r"""One study's run: run directory, config, device, report, targets and summary.


    Args:
        name: the study's registered name (``preimage run NAME``).
        config: the resolved study config (nested component configs included).
        out_dir: the run directory.
        argv: the command line, recorded in ``config.json``.
        title: report title (default: the study name).
        intro: text at the top of the report.
        overwrite: replace an earlier run in ``out_dir`` instead of refusing (default: the
            config's ``overwrite`` field).
        echo: print the summary at :meth:`finish` (main process only).

    Raises:
        ConfigError: when ``out_dir`` holds another run and ``overwrite`` is false.
    """

    def __init__(
        self,
        name: str,
        config: StudyConfig,
        out_dir: str | os.PathLike[str],
        *,
        argv: Sequence[str] | None = None,
        title: str | None = None,
        intro: str | None = None,
        overwrite: bool | None = None,
        echo: bool = True,
    ) -> None:
        self.name = name
        self.config = config
        self.device = resolve_device(config.device)
        replace = getattr(config, "overwrite", False) if overwrite is None else overwrite
        self.dir = RunDir.open(out_dir, kind=f"run {name}", overwrite=bool(replace))
        self.dir.write_config(config, argv=argv, seed=config.seed, command=f"run {name}")
        self.report = Report(title or name)
        self.echo = echo
        self.targets: list[Target] = []
        self._finished = False
        if config.budget == "smoke":
            self.report.add_text(SMOKE_CAVEAT)
        if intro:
            self.report.add_text(intro)

    def __enter__(self) -> StudyRun:
        return self

    def __exit__(self, *exc_info: object) -> None:
        # Nothing to release: an unfinished run keeps what it wrote, finish() writes the rest.
        return None

    @property
    def path(self) -> Path:
        """The run directory's folder."""
        return self.dir.path

    def seed(self, offset: int = 0) -> torch.Generator:
        """Seed torch's global generator with ``config.seed + offset``; returns a CPU generator
        seeded the same way, for code that takes an explicit one."""
        torch.manual_seed(self.config.seed + offset)
        return torch.Generator().manual_seed(self.config.seed + offset)

    def checkpoint_path(self, name: str) -> Path:
        """``checkpoints/<name>.safetensors`` of the run."""
        return self.dir.checkpoint_path(name)

    def load_data(
        self, dataset: str, *, n_train: int | None, n_test: int | None
    ) -> tuple[Pair, Pair]:
        """Train and test subsets of ``dataset`` on the run's device, drawn with the config's
        ``seed`` and read from its ``data_dir`` (:func:`~preimage.data.load_train_test`)."""
        return load_train_test(
            dataset,
            n_train=n_train,
            n_test=n_test,
            seed=self.config.seed,
            data_dir=self.config.data_dir,
            device=self.device,
        )

    def heading(self, text: str, level: int = 2) -> None:
        """A report heading."""
        self.report.add_heading(text, level)

    def text(self, text: str) -> None:
        """A report paragraph (``**bold**`` and backticks are rendered)."""
        self.report.add_text(text)

    def table(self, rows: Sequence[Mapping[str, Any]], title: str | None = None) -> None:
        """A report table of ``rows`` (one mapping per row)."""
        self.report.add_table(rows, title=title)

    def figure(self, fig: Figure, name: str, caption: str) -> Path:
        """Save ``fig`` as ``figures/<name>.png`` and embed it in the report with ``caption``."""
        path = save_figure(fig, self.dir.figure_path(name))
        self.report.add_figure(path, caption)
        return path

    def check(self, name: str, value: Any, goal: str, met: bool | None = None) -> Target:
        """Record a target; ``met`` is computed from ``goal`` (``"<= 0.05"``) when not given.

        Example:
            >>> import tempfile
            >>> from preimage.studies.base import StudyConfig
            >>> study = StudyRun("t", StudyConfig(), tempfile.mkdtemp(), echo=False)
            >>> study.check("gain", 12.0, ">= 10").met, study.check("x", 1, "odd", met=True).met
            (True, True)
        """
        if any(t.name == name for t in self.targets):
            raise ConfigError(f"target {name!r} checked twice")
        if met is None:
            met = goal_met(value, goal)
        target = Target(name, value, goal, bool(met))
        self.targets.append(target)
        return target

    def compare(
        self, name: str, metrics: Mapping[str, Any], key: str, op: str, other: str, goal: str
    ) -> Target:
        """Record the target ``metrics[key] <op> metrics[other]`` (``op`` one of ``<=``,
        ``>=``, ``<``, ``>``, ``==``, ``!=``), with ``metrics[key]`` as its value.

        For goals that compare two measured values, e.g. "B's gap is smaller than A's":
        naming both keys once keeps the reported value and the comparison on the same metric.
        A NaN or ``None`` on either side meets no goal, as in :func:`goal_met`.

        Example:
            >>> import tempfile
            >>> from preimage.studies.base import StudyConfig
            >>> study = StudyRun("t", StudyConfig(), tempfile.mkdtemp(), echo=False)
            >>> study.compare("b_below_a", {"a": 0.3, "b": 0.1}, "b", "<", "a", "< A").met
            True
        """
        if op not in _COMPARATORS:
            raise ConfigError(f"unknown comparison {op!r}; use one of {', '.join(_COMPARATORS)}")
        value, bound = metrics[key], metrics[other]
        met = not any(_missing(v) for v in (value, bound)) and bool(_COMPARATORS[op](value, bound))
        return self.check(name, value, goal, met=met)

    def finish(self, metrics: Mapping[str, Any]) -> dict[str, Any]:
        """Write ``metrics.json`` and ``report.html``, print the summary, return the metrics.

        Each target adds ``target_<name>_met``; the report ends with the targets, the
        metrics and the configuration.
        """
        if self._finished:
            raise ConfigError("StudyRun.finish called twice")
        self._finished = True
        out: dict[str, Any] = dict(metrics)
        for target in self.targets:
            out[f"target_{target.name}_met"] = target.met
        if self.targets:
            self.report.add_heading("Targets")
            if self.config.budget == "smoke":
                self.report.add_text("Smoke budget: these targets are not meaningful here.")
            self.report.add_table([t.row() for t in self.targets], title="Targets of the study")
        self.report.add_heading("Metrics")
        self.report.add_metrics(out)
        self.report.add_heading("Configuration")
        self.report.add_config(dataclasses.asdict(self.config))
        self.dir.write_metrics(out)
        self.report.write(self.dir.report_path)
        if self.echo and is_main_process():
            print(self.summary())
        return out

    def summary(self) -> str:
        """The printed summary: study, budget, every target, where the report is."""
        lines = [f"{self.name} ({self.config.budget} budget)"]
        lines += [t.line() for t in self.targets]
        lines.append(f"report: {self.dir.report_path.resolve()}")
        return "\n".join(lines)


class RunFunction(Protocol):
    """A study's ``run``: what the registry and ``preimage run`` call."""

    def __call__(
        self, config: Any, out_dir: str | os.PathLike[str], *, argv: Sequence[str] | None = None
    ) -> dict[str, Any]: ...


def study_entry(
    name: str,
    *,
    title: str | None = None,
    intro: str | None = None,
    check: Callable[[C], object] | None = None,
) -> Callable[[Callable[[StudyRun, C], dict[str, Any]]], RunFunction]:
    """Make ``body(study, config) -> metrics`` a study's ``run(config, out_dir, *, argv=None)``.

    Every study starts the same way: open a :class:`StudyRun` named ``name`` in ``out_dir``
    (recording ``argv``), with the report's ``title`` and ``intro``. The decorated body gets
    that run and the config, does the science and ends with ``study.finish(metrics)``. An
    introduction that depends on the config is the body's first ``study.text(...)``: it lands
    in the same place of the report as ``intro``. ``check(config)`` runs before the run
    directory opens, so a config it refuses (raising
    :class:`~preimage.errors.ConfigError`) leaves the folder untouched.

    The body's docstring becomes ``run``'s; doctests there are not collected (``run`` is
    defined here), so a study's examples belong to its module or ``Config`` docstring.

    Example:
        >>> import tempfile
        >>> from preimage.studies.base import StudyConfig
        >>> @study_entry("toy", title="A toy study")
        ... def run(study: StudyRun, config: StudyConfig) -> dict[str, Any]:
        ...     study.check("seed", config.seed, "== 0")
        ...     return study.finish({"seed": config.seed})
        >>> import contextlib, io
        >>> with contextlib.redirect_stdout(io.StringIO()):
        ...     metrics = run(StudyConfig(budget="cpu"), tempfile.mkdtemp())
        >>> metrics
        {'seed': 0, 'target_seed_met': True}
    """

    def decorate(body: Callable[[StudyRun, C], dict[str, Any]]) -> RunFunction:
        def run(
            config: C, out_dir: str | os.PathLike[str], *, argv: Sequence[str] | None = None
        ) -> dict[str, Any]:
            if check is not None:
                check(config)
            study = StudyRun(name, config, out_dir, argv=argv, title=title, intro=intro)
            return body(study, config)

        # Not functools.wraps: its __wrapped__ would make the signature look like the body's.
        run.__module__, run.__name__ = body.__module__, body.__name__
        run.__qualname__, run.__doc__ = body.__qualname__, body.__doc__
        return run

    return decorate
