"""Typed, nested KEY=VALUE options (preimage.options)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from preimage.errors import ConfigError
from preimage.options import (
    apply_overrides,
    check_field_types,
    option_table,
    parse_assignments,
    parse_value,
)


@dataclass(frozen=True)
class Inner:
    hidden: int = 8
    rate: float = 0.5
    mode: Literal["a", "b"] = "a"
    flag: bool = True
    size: int | None = None
    shape: tuple[int, ...] = (1, 2)


@dataclass(frozen=True)
class Outer:
    seed: int = 0
    name: str = "x"
    inner: Inner = field(default_factory=Inner)


@pytest.mark.parametrize(
    ("raw", "tp", "expected"),
    [
        ("3", int, 3),
        ("-2", int, -2),
        ("1e-3", float, 1e-3),
        ("4", float, 4.0),
        ("true", bool, True),
        ("off", bool, False),
        ("none", int | None, None),
        ("7", int | None, 7),
        ("b", Literal["a", "b"], "b"),
        ("[3, 8, 8]", tuple[int, ...], (3, 8, 8)),
        ("(1,2)", tuple[int, ...], (1, 2)),
        ("text", str, "text"),
    ],
)
def test_text_is_parsed_against_the_field_type(raw: str, tp: object, expected: object) -> None:
    assert parse_value(raw, tp, "key") == expected


@pytest.mark.parametrize(
    ("raw", "tp", "needle"),
    [
        ("abc", int, "takes an int"),
        ("1.5", int, "takes an int"),
        ("true", int, "takes an int"),
        ("maybe", bool, "true or false"),
        ("nan", float, "NaN"),
        ("c", Literal["a", "b"], "one of"),
        ("x", int | None, "int or none"),
        ("[1, a]", tuple[int, ...], "key[1] takes an int"),
    ],
)
def test_bad_text_is_a_one_line_config_error(raw: str, tp: object, needle: str) -> None:
    with pytest.raises(ConfigError, match="key") as err:
        parse_value(raw, tp, "key")
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_dotted_overrides_reach_nested_configs_and_copy() -> None:
    base = Outer()
    cfg = apply_overrides(base, {"inner.hidden": "16", "inner.mode": "b", "seed": 4})
    assert (cfg.seed, cfg.inner.hidden, cfg.inner.mode) == (4, 16, "b")
    assert base.inner.hidden == 8, "the original config is left as it was"
    # A nested mapping works like dotted keys.
    assert apply_overrides(base, {"inner": {"rate": "0.25"}}).inner.rate == 0.25


def test_unknown_keys_name_the_valid_ones_with_types() -> None:
    with pytest.raises(ConfigError) as err:
        apply_overrides(Outer(), {"inner.bogus": "1"})
    message = str(err.value)
    assert "unknown option 'inner.bogus'" in message
    assert "inner.hidden (int)" in message and "inner.mode ('a' | 'b')" in message
    with pytest.raises(ConfigError, match="not a group"):
        apply_overrides(Outer(), {"seed.x": "1"})
    with pytest.raises(ConfigError, match="group of options"):
        apply_overrides(Outer(), {"inner": "3"})


def test_typed_values_are_checked_too() -> None:
    with pytest.raises(ConfigError, match="takes an int"):
        apply_overrides(Outer(), {"seed": 1.5})
    with pytest.raises(ConfigError, match="true or false"):
        apply_overrides(Outer(), {"inner.flag": 2})


def test_check_field_types_rejects_text_in_numeric_fields() -> None:
    check_field_types(Inner())
    with pytest.raises(ConfigError, match="hidden takes an int"):
        check_field_types(Inner(hidden="a"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="mode takes one of"):
        check_field_types(Inner(mode="c"))  # type: ignore[arg-type]


def test_option_table_lists_nested_keys_types_and_values() -> None:
    table = {key: (kind, value) for key, kind, value in option_table(Outer())}
    assert table["inner.hidden"] == ("int", 8)
    assert table["inner.size"] == ("int or none", None)
    assert table["seed"] == ("int", 0)


def test_parse_assignments_keeps_text_and_refuses_missing_equals() -> None:
    assert parse_assignments(["a-b=1", "c.d=x=y"], flag="-o") == {"a_b": "1", "c.d": "x=y"}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_assignments(["novalue"], flag="-o")


def test_cli_sets_per_stage_block_counts_of_a_model_config() -> None:
    from preimage.models import FiRevNetConfig

    @dataclass(frozen=True)
    class Study:
        model: FiRevNetConfig = field(default_factory=FiRevNetConfig)

    items = ["model.stage_blocks=[4,2,2]", "model.readout=center", "model.logit_norm=true"]
    cfg = apply_overrides(Study(), parse_assignments(items, flag="-o"))
    assert cfg.model.stage_blocks == (4, 2, 2) and cfg.model.readout == "center"
    assert cfg.model.logit_norm is True
    back = apply_overrides(cfg, parse_assignments(["model.stage_blocks=none"], flag="-o"))
    assert back.model.stage_blocks is None
    with pytest.raises(ConfigError, match="one count per stage"):
        apply_overrides(Study(), {"model.stage_blocks": "[4,2]"})
    with pytest.raises(ConfigError, match="stage_blocks"):
        apply_overrides(Study(), {"model.stage_blocks": "[4,x,2]"})
    assert ("model.stage_blocks", "list of int or none", None) in option_table(Study())
