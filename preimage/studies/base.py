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
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, TypeVar

from preimage.errors import ConfigError
from preimage.options import apply_overrides, check_field_types, option_table
from preimage.train.config import check_device_name

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
        overwrite: replace an earlier run in the output folder instead of refusing.
    """

    budget: Budget = "cpu"
    seed: int = 0
    device: str = "auto"
    data_dir: str | None = None
    progress: bool = True
    overwrite: bool = False

    BUDGETS: ClassVar[Mapping[str, Mapping[str, Any]]] = {"smoke": {}, "cpu": {}, "paper": {}}

    def __post_init__(self) -> None:
        # Checked when the config is built, so a bad value never opens a run directory.
        check_field_types(self)
        if self.budget not in BUDGETS:
            raise ConfigError(f"unknown budget {self.budget!r}; use one of {', '.join(BUDGETS)}")
        check_device_name(self.device)

    @classmethod
    def for_budget(cls: type[C], budget: str, **overrides: Any) -> C:
        """The config of ``budget`` with ``overrides`` applied on top.

        Budgets and overrides use dotted keys for nested component configs
        (``"train.epochs"``); values may be text (parsed against the field's type, as the
        command line's ``-o`` passes them) or typed values.

        Raises:
            ConfigError: an unknown key (the message lists the valid keys and their types) or
                a value of the wrong type.
        """
        if budget not in BUDGETS:
            raise ConfigError(f"unknown budget {budget!r}; use one of {', '.join(BUDGETS)}")
        config = apply_overrides(cls(), {"budget": budget, **cls.BUDGETS.get(budget, {})})
        return apply_overrides(config, overrides)

    def options(self) -> list[tuple[str, str, Any]]:
        """``(dotted key, type, value)`` of every option, as ``preimage studies NAME`` lists."""
        return option_table(self)


class Study(Protocol):
    """What the registry needs of a study module."""

    Config: type[StudyConfig]
    run: Callable[..., dict[str, Any]]
