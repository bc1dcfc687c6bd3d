"""The study contract: ``run(config, out_dir) -> metrics`` with budgeted configs.

A study reproduces one experiment of the papers. Its config is a frozen dataclass with three
budgets, built by :meth:`StudyConfig.for_budget`:

- ``smoke``: seconds; what the test suite runs;
- ``cpu``: at most 45 minutes on 2 CPU cores;
- ``paper``: the paper's settings.

Every study writes the run directory of DESIGN.md (``config.json``, ``metrics.json``,
``figures/*.png``, ``report.html``, checkpoints where it trains) and returns its metrics.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Toy(StudyConfig):
    ...     steps: int = 1000
    ...     BUDGETS = {"smoke": {"steps": 3}, "cpu": {}, "paper": {"steps": 10**6}}
    >>> Toy.for_budget("smoke").steps, Toy.for_budget("cpu").steps
    (3, 1000)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar, Literal, Protocol, TypeVar

from preimage.errors import ConfigError

__all__ = ["BUDGETS", "Budget", "Study", "StudyConfig"]

Budget = Literal["smoke", "cpu", "paper"]
BUDGETS: tuple[Budget, ...] = ("smoke", "cpu", "paper")

C = TypeVar("C", bound="StudyConfig")


@dataclass(frozen=True)
class StudyConfig:
    """Base of every study config: common fields plus per-budget overrides.

    Subclasses add their own fields (with the ``cpu`` values as defaults) and set ``BUDGETS``
    to the field overrides of each budget.

    Attributes:
        budget: which budget the values come from.
        seed: random seed.
        device: ``auto``, ``cpu``, ``cuda``, ...
        data_dir: data root (default ``$PREIMAGE_DATA``).
        progress: show progress bars.
    """

    budget: Budget = "cpu"
    seed: int = 0
    device: str = "auto"
    data_dir: str | None = None
    progress: bool = True

    BUDGETS: ClassVar[Mapping[str, Mapping[str, Any]]] = {"smoke": {}, "cpu": {}, "paper": {}}

    @classmethod
    def for_budget(cls: type[C], budget: str, **overrides: Any) -> C:
        """The config of ``budget`` with ``overrides`` applied on top."""
        if budget not in BUDGETS:
            raise ConfigError(f"unknown budget {budget!r}; use one of {', '.join(BUDGETS)}")
        names = {f.name for f in fields(cls)}
        unknown = set(overrides) - names
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} options: {', '.join(sorted(unknown))}")
        values = {**cls.BUDGETS.get(budget, {}), **overrides, "budget": budget}
        return replace(cls(), **values)


class Study(Protocol):
    """What the registry needs of a study module."""

    Config: type[StudyConfig]
    run: Callable[..., dict[str, Any]]
