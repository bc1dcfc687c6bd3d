r"""Typed, nested options: parse ``KEY=VALUE`` text against the fields of a config dataclass.

Every component owns a config dataclass (:class:`~preimage.train.TrainConfig`,
:class:`~preimage.models.FiRevNetConfig`, ...). A study config holds those configs as fields, so
an option is addressed by a dotted key (``train.epochs``, ``model.hidden``, ``ice.nce_weight``)
and its text is parsed against the annotated type of the field it sets: ``int``, ``float``,
``bool``, ``str``, ``Literal[...]``, ``X | None`` and tuples of those. A key that does not exist
or a value that does not parse raises :class:`~preimage.errors.ConfigError` with one line that
names the valid keys and their types, so the command line can print it and exit with code 2.

This follows minGPT's dotted ``--trainer.lr=...`` overrides, with the difference that values are
typed by the dataclass rather than by :func:`ast.literal_eval`, so ``hidden=1.5`` and
``split=maybe`` are errors instead of silently changing a field's type.

Example:
    >>> from dataclasses import dataclass, field
    >>> @dataclass(frozen=True)
    ... class Inner:
    ...     hidden: int = 8
    ...     mode: Literal["a", "b"] = "a"
    >>> @dataclass(frozen=True)
    ... class Outer:
    ...     seed: int = 0
    ...     inner: Inner = field(default_factory=Inner)
    >>> cfg = apply_overrides(Outer(), {"inner.hidden": "16", "seed": "3"})
    >>> cfg.inner.hidden, cfg.seed
    (16, 3)
    >>> apply_overrides(Outer(), {"inner.hidden": "1.5"})
    Traceback (most recent call last):
    ...
    preimage.errors.ConfigError: inner.hidden takes an int, got '1.5'
    >>> [key for key, _, _ in option_table(Outer())]
    ['seed', 'inner.hidden', 'inner.mode']
"""

from __future__ import annotations

import dataclasses
import math
import sys
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal, Union

from preimage.errors import ConfigError

__all__ = [
    "apply_overrides",
    "check_field_types",
    "describe_type",
    "field_type_hints",
    "option_table",
    "parse_assignments",
    "parse_value",
]

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"none", "null"}


def field_type_hints(cls: type) -> dict[str, Any]:
    """The resolved type of every field of dataclass ``cls`` (string annotations evaluated).

    Example:
        >>> from preimage.train import TrainConfig
        >>> field_type_hints(TrainConfig)["epochs"]
        <class 'int'>
    """
    module = sys.modules.get(cls.__module__)
    namespace = dict(vars(module)) if module is not None else {}
    namespace.setdefault("Literal", Literal)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp: Any = f.type
        if isinstance(tp, str):
            try:
                tp = eval(tp, namespace)  # annotations of the class's own module, as Python would
            except NameError:
                # A class defined in a local scope (a doctest, a test): its default tells the type.
                tp = _default_type(f)
        out[f.name] = tp
    return out


def _default_type(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return type(f.default)
    if f.default_factory is not dataclasses.MISSING:
        return type(f.default_factory())
    return Any


def _union_args(tp: Any) -> tuple[Any, ...] | None:
    origin = typing.get_origin(tp)
    if origin is Union or origin is types.UnionType:
        return typing.get_args(tp)
    return None


def describe_type(tp: Any) -> str:
    """A short human name of a field type, as the option listings print it.

    Example:
        >>> describe_type(int | None), describe_type(Literal["a", "b"])
        ('int or none', "'a' | 'b'")
    """
    args = _union_args(tp)
    if args is not None:
        return " or ".join("none" if a is type(None) else describe_type(a) for a in args)
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (tuple, list, Sequence):
        inner = typing.get_args(tp)
        name = describe_type(inner[0]) if inner else "value"
        return f"list of {name}"
    if origin in (dict, Mapping):
        return "mapping"
    if dataclasses.is_dataclass(tp):
        return tp.__name__
    return getattr(tp, "__name__", str(tp))


def _article(name: str) -> str:
    return "an" if name[:1] in "aeiou" else "a"


def parse_value(raw: Any, tp: Any, key: str) -> Any:
    """``raw`` (text from the command line, or an already typed value) as a value of type ``tp``.

    Raises:
        ConfigError: one line naming ``key``, its type and the rejected value.

    Example:
        >>> parse_value("3", int, "epochs"), parse_value("1e-3", float, "lr")
        (3, 0.001)
        >>> parse_value("none", int | None, "n_train") is None
        True
        >>> parse_value("[3, 8, 8]", tuple[int, ...], "in_shape")
        (3, 8, 8)
    """
    args = _union_args(tp)
    if args is not None:
        if type(None) in args and (raw is None or (isinstance(raw, str) and raw.lower() in _NONE)):
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return parse_value(raw, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key} takes {describe_type(tp)}, got {raw!r}")
    origin = typing.get_origin(tp)
    if tp is Any:
        return raw
    if origin is Literal:
        choices = typing.get_args(tp)
        for choice in choices:
            if raw == choice or (isinstance(raw, str) and raw == str(choice)):
                return choice
        raise ConfigError(f"{key} takes one of {describe_type(tp)}, got {raw!r}")
    if tp is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in _TRUE | _FALSE:
            return raw.lower() in _TRUE
        raise ConfigError(f"{key} takes true or false, got {raw!r}")
    if tp is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if isinstance(raw, str):
            try:
                return int(raw.strip())
            except ValueError:
                pass
        raise ConfigError(f"{key} takes an int, got {raw!r}")
    if tp is float:
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            value = float(raw)
        elif isinstance(raw, str):
            try:
                value = float(raw.strip())
            except ValueError:
                raise ConfigError(f"{key} takes a float, got {raw!r}") from None
        else:
            raise ConfigError(f"{key} takes a float, got {raw!r}")
        if math.isnan(value):
            raise ConfigError(f"{key} takes a float, got NaN")
        return value
    if tp is str:
        if isinstance(raw, str):
            return raw
        raise ConfigError(f"{key} takes a string, got {raw!r}")
    if origin in (tuple, list, Sequence):
        inner = typing.get_args(tp)
        item_type = inner[0] if inner else Any
        items = _split_list(raw, key) if isinstance(raw, str) else raw
        if not isinstance(items, (list, tuple)):
            raise ConfigError(f"{key} takes {describe_type(tp)}, got {raw!r}")
        parsed = [parse_value(item, item_type, f"{key}[{i}]") for i, item in enumerate(items)]
        return list(parsed) if origin is list else tuple(parsed)
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        if isinstance(raw, Mapping):
            return dict(raw)
        raise ConfigError(f"{key} takes a mapping, got {raw!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(raw, tp):
            return raw
        if isinstance(raw, Mapping):
            return apply_overrides(tp(), raw, prefix=f"{key}.")
        raise ConfigError(f"{key} is a group of options; set its keys as {key}.NAME=VALUE")
    if isinstance(tp, type) and isinstance(raw, tp):
        return raw
    raise ConfigError(f"{key} takes {describe_type(tp)}, got {raw!r}")


def _split_list(text: str, key: str) -> list[str]:
    body = text.strip()
    if body.startswith(("[", "(")) and body.endswith(("]", ")")):
        body = body[1:-1]
    parts = [p.strip().strip("'\"") for p in body.split(",")]
    return [p for p in parts if p]


def _check_key(config: Any, name: str, prefix: str) -> Any:
    hints = field_type_hints(type(config))
    if name not in hints:
        valid = ", ".join(f"{prefix}{k} ({describe_type(t)})" for k, t in hints.items())
        raise ConfigError(f"unknown option {prefix + name!r}; valid keys: {valid}")
    return hints[name]


def apply_overrides(config: Any, overrides: Mapping[str, Any], *, prefix: str = "") -> Any:
    """A copy of dataclass ``config`` with the dotted ``overrides`` parsed and set.

    A value may be text (parsed against the field's type) or an already typed value (checked).
    A nested mapping is applied to a nested config. Frozen and mutable dataclasses both work;
    ``config`` itself is never modified.

    Raises:
        ConfigError: an unknown key (the message lists the valid ones) or a value of the wrong
            type.
    """
    grouped: dict[str, dict[str, Any]] = {}
    direct: dict[str, Any] = {}
    for key, value in overrides.items():
        name, dot, rest = key.replace("-", "_").partition(".")
        tp = _check_key(config, name, prefix)
        if dot:
            if not dataclasses.is_dataclass(tp):
                raise ConfigError(f"{prefix}{name} is not a group of options; use {prefix}{name}=")
            grouped.setdefault(name, {})[rest] = value
        elif dataclasses.is_dataclass(tp) and isinstance(value, Mapping):
            grouped.setdefault(name, {}).update(value)
        else:
            direct[name] = parse_value(value, tp, f"{prefix}{name}")
    for name, inner in grouped.items():
        base = direct.pop(name, getattr(config, name))
        direct[name] = apply_overrides(base, inner, prefix=f"{prefix}{name}.")
    try:
        return dataclasses.replace(config, **direct)
    except (TypeError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"{prefix or 'options'}: {err}") from None


def check_field_types(instance: Any) -> None:
    """Raise :class:`ConfigError` when a field of dataclass ``instance`` has the wrong type.

    Meant for ``__post_init__`` of component configs, so that ``FiRevNet(hidden="a")`` fails
    at construction with a message naming the field, not deep inside a layer.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class C:
        ...     n: int = 1
        >>> check_field_types(C(n="a"))
        Traceback (most recent call last):
        ...
        preimage.errors.ConfigError: n takes an int, got 'a'
    """
    for name, tp in field_type_hints(type(instance)).items():
        value = getattr(instance, name)
        if isinstance(value, str) and not _accepts_text(tp):
            kind = describe_type(tp)
            raise ConfigError(f"{name} takes {_article(kind)} {kind}, got {value!r}")
        parse_value(value, tp, name)


def _accepts_text(tp: Any) -> bool:
    args = _union_args(tp)
    if args is not None:
        return any(_accepts_text(a) for a in args)
    if typing.get_origin(tp) is Literal:
        return any(isinstance(a, str) for a in typing.get_args(tp))
    return tp is str or tp is Any


def _walk(config: Any, prefix: str) -> Iterator[tuple[str, str, Any]]:
    for name, tp in field_type_hints(type(config)).items():
        value = getattr(config, name)
        if dataclasses.is_dataclass(tp) and dataclasses.is_dataclass(value):
            yield from _walk(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", describe_type(tp), value


def option_table(config: Any) -> list[tuple[str, str, Any]]:
    """``(dotted key, type, current value)`` of every option of ``config``, nested ones included."""
    return list(_walk(config, ""))


def parse_assignments(items: Sequence[str], *, flag: str) -> dict[str, str]:
    """``["a=1", "b.c=x"]`` as ``{"a": "1", "b.c": "x"}`` (values stay text until typed).

    Example:
        >>> parse_assignments(["train.epochs=3", "model.hidden=16"], flag="-o")
        {'train.epochs': '3', 'model.hidden': '16'}
    """
    out: dict[str, str] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{flag} takes KEY=VALUE, got {item!r}")
        out[key.replace("-", "_")] = raw
    return out
