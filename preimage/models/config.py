"""Checks for the models' frozen config dataclasses: known keys and typed fields.

A model built as ``Model(in_shape, num_classes, **kwargs)`` turns its keyword options into its
config with :func:`config_from_kwargs`, which refuses a key that is no field of the config. A
config field annotated ``int`` must hold an ``int`` (not a ``bool``, not ``"a"``), a ``float``
a real number, a ``bool`` a ``bool``, a ``Literal`` one of its values and a ``tuple[X, ...]`` a
tuple or list (JSON turns tuples into lists) whose every item fits ``X``; otherwise the
constructor raises a one-line :class:`~preimage.errors.ConfigError` naming the field, instead
of a ``TypeError`` from a comparison deep inside ``__post_init__``.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Toy:
    ...     hidden: int = 4
    ...     def __post_init__(self) -> None:
    ...         check_field_types(self)
    >>> try:
    ...     Toy(hidden="a")
    ... except ConfigError as err:
    ...     print(err)
    Toy.hidden must be an int, got 'a'
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union

from preimage.errors import ConfigError

__all__ = ["check_field_types", "config_from_kwargs"]

_C = TypeVar("_C")


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return value in typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if origin is tuple or hint is tuple:
        if not isinstance(value, tuple | list):
            return False
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(item, args[0]) for item in value)
        if args:
            return len(args) == len(value) and all(map(_matches, value, args))
        return True
    return True  # other annotations are checked by the config itself


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if hint is type(None):
        return "None"
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a tuple of {_describe(args[0]).split(' ', 1)[1]}"
        return "a tuple"
    return f"a{'n' if hint is int else ''} {getattr(hint, '__name__', hint)}"


def check_field_types(config: Any) -> None:
    """Raise :class:`ConfigError` unless every field of the dataclass ``config`` fits its type."""
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        hint = hints.get(field.name)
        if hint is not None and not _matches(value, hint):
            raise ConfigError(
                f"{type(config).__name__}.{field.name} must be {_describe(hint)}, got {value!r}"
            )


def config_from_kwargs(config_type: type[_C], kwargs: Mapping[str, Any], owner: str) -> _C:
    """``config_type(**kwargs)``, refusing a key that is no field of the dataclass.

    Raises:
        ConfigError: ``unknown <owner> options: ...``, naming every unknown key.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass(frozen=True)
        ... class Toy:
        ...     hidden: int = 4
        >>> config_from_kwargs(Toy, {"hidden": 8}, "Toy").hidden
        8
        >>> try:
        ...     config_from_kwargs(Toy, {"hiden": 8, "depht": 2}, "ToyNet")
        ... except ConfigError as err:
        ...     print(err)
        unknown ToyNet options: depht, hiden
    """
    unknown = set(kwargs) - {f.name for f in dataclasses.fields(config_type)}  # type: ignore[arg-type]
    if unknown:
        raise ConfigError(f"unknown {owner} options: {', '.join(sorted(unknown))}")
    return config_type(**kwargs)
