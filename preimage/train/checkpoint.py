r"""Pickle-free, atomically written training checkpoints in the safetensors format.

A checkpoint is one ``.safetensors`` file. Its tensor entries are

* ``model.<key>``: every tensor of the model's ``state_dict``;
* ``optim.<path>``: the tensors of the optimiser state (moments, step counters);
* ``sched.<path>``: tensors of the learning-rate scheduler state, if any;
* ``rng.<path>``: tensors under ``state["rng"]`` (generator states are ``uint8`` tensors);
* ``state.<path>``: any other tensor inside ``state``.

Everything that is not a tensor (optimiser ``param_groups``, scheduler counters, epoch,
history, ...) is stored as JSON in the safetensors header metadata, with placeholders that point
at the tensor entries, so loading never executes code: no pickle anywhere. The metadata also
carries ``format = "preimage-checkpoint"``, ``format_version = "1"``, ``model_class`` and a
SHA-256 digest of all tensors and metadata, which turns silent bit rot into a
:class:`~preimage.errors.CheckpointError`.

JSON encoding is lossless for the values a training state holds: ``dict`` (any JSON-scalar
keys, e.g. the integer parameter ids of an optimiser state), ``list``, ``tuple``, ``bytes``
(base64), ``str``, ``int``, ``float`` (including NaN and infinities), ``bool``, ``None`` and
NumPy scalars (stored as the Python scalar).

Files are written to a temporary file in the target directory, flushed and ``fsync``-ed, then
moved over the target with :func:`os.replace`, so a crash or a kill at any moment leaves either
the old or the new checkpoint, never a torn one.

References:
    Jacobsen, Behrmann, Zemel, Bethge (2019), *Excessive Invariance Causes Adversarial
    Vulnerability*, appendix D.2: the 100-epoch MNIST recipe whose runs these checkpoints let
    survive interruption. The papers say nothing about checkpoint formats; this layout is ours.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
from safetensors import SafetensorError
from torch import Tensor, nn

import preimage
from preimage.errors import CheckpointError
from preimage.runs import atomic_write_bytes

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "atomic_write_bytes",
    "latest_checkpoint",
    "load_checkpoint",
    "read_checkpoint_metadata",
    "save_checkpoint",
]

FORMAT = "preimage-checkpoint"
"""Value of the ``format`` metadata key of every preimage checkpoint."""

FORMAT_VERSION = "1"
"""Version of the layout described in this module."""

_TENSOR = "__tensor__"
_BYTES = "__bytes__"
_TUPLE = "__tuple__"
_ITEMS = "__items__"
_DIGEST = "sha256"
_MAX_HEADER = 100_000_000


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    state: dict[str, Any] | None = None,
    model_class: str | None = None,
) -> Path:
    """Atomically write a checkpoint of a model and, optionally, its training state.

    Args:
        path: destination ``.safetensors`` file; parent directories are created.
        model: module whose ``state_dict`` is stored under ``model.``.
        optimizer: optimiser whose state is stored (tensors under ``optim.``).
        scheduler: learning-rate scheduler (anything with ``state_dict``), stored likewise.
        state: free-form training state: ``str`` keys, values built from the types listed in
            the module docstring; tensors under the key ``"rng"`` are stored as ``rng.`` entries.
        model_class: name recorded as ``model_class``; defaults to ``type(model).__name__``.

    Returns:
        The written path.

    Raises:
        CheckpointError: ``state`` holds a value that cannot be stored, or writing failed.

    Example:
        >>> import tempfile
        >>> net = nn.Linear(3, 2)
        >>> opt = torch.optim.Adamax(net.parameters())
        >>> p = save_checkpoint(Path(tempfile.mkdtemp()) / "c.safetensors", model=net,
        ...                     optimizer=opt, state={"epoch": 1})
        >>> load_checkpoint(p, model=nn.Linear(3, 2), expected_model_class="Linear")
        {'epoch': 1}
    """
    path = Path(path)
    tensors: dict[str, Tensor] = {}
    model_extra: dict[str, Any] = {}
    for key, value in model.state_dict().items():
        if isinstance(value, Tensor):
            tensors[f"model.{key}"] = _to_cpu_copy(value)
        else:
            model_extra[key] = _encode(value, f"model_extra.{key}", tensors)
    metadata: dict[str, str] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_class": model_class if model_class is not None else type(model).__name__,
        "preimage_version": preimage.__version__,
        "torch_version": torch.__version__,
    }
    if model_extra:
        metadata["model_extra"] = _dumps(model_extra)
    if optimizer is not None:
        metadata["optimizer_class"] = type(optimizer).__name__
        metadata["optimizer"] = _dumps(_encode(optimizer.state_dict(), "optim", tensors))
    if scheduler is not None:
        metadata["scheduler_class"] = type(scheduler).__name__
        metadata["scheduler"] = _dumps(_encode(scheduler.state_dict(), "sched", tensors))
    if state is not None:
        metadata["state"] = _dumps(_encode_state(state, tensors))
    metadata[_DIGEST] = _digest(tensors, metadata)
    data = safetensors.torch.save(tensors, metadata=metadata)
    try:
        return atomic_write_bytes(path, data)
    except OSError as e:
        raise CheckpointError(f"cannot write checkpoint {path}: {e}") from e


def read_checkpoint_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The header metadata of a preimage checkpoint, checked but without loading the tensors.

    Raises:
        CheckpointError: the file is missing, unreadable, corrupted or no preimage checkpoint.
    """
    path = Path(path)
    return _check_format(path, _read_header(path, _read_bytes(path)))


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    expected_model_class: str | None = None,
    map_location: str | torch.device | None = None,
) -> dict[str, Any]:
    """Restore a checkpoint written by :func:`save_checkpoint`, validating it first.

    The model must match the stored ``state_dict`` exactly (same keys and shapes; values are
    copied onto the model's own devices and dtypes). Optimiser and scheduler are restored when
    given, and then must be present in the file with the same class.

    Args:
        path: the ``.safetensors`` checkpoint.
        model: module to load into.
        optimizer: optimiser to restore (its tensors follow its parameters' devices).
        scheduler: learning-rate scheduler to restore.
        expected_model_class: if given, the stored ``model_class`` must equal it.
        map_location: device for the tensors inside the returned ``state``; CPU by default.

    Returns:
        The ``state`` dictionary that was saved (empty if none was).

    Raises:
        CheckpointError: missing, truncated or corrupted file; a safetensors file that is not a
            preimage checkpoint; a different model class; missing, unexpected or
            shape-mismatched model keys; missing or incompatible optimiser/scheduler state.
    """
    path = Path(path)
    data = _read_bytes(path)
    metadata = _check_format(path, _read_header(path, data))
    try:
        tensors = safetensors.torch.load(data)
    except SafetensorError as e:
        raise CheckpointError(f"checkpoint {path} is corrupted: {_first_line(e)}") from None
    if metadata.get(_DIGEST) != _digest(tensors, metadata):
        raise CheckpointError(f"checkpoint {path} is corrupted: checksum mismatch")

    stored_class = metadata.get("model_class", "?")
    if expected_model_class is not None and stored_class != expected_model_class:
        raise CheckpointError(
            f"checkpoint {path} holds a {stored_class!r} model, expected {expected_model_class!r}"
        )
    _load_model(path, model, tensors, metadata)
    for section, target in (("optimizer", optimizer), ("scheduler", scheduler)):
        if target is None:
            continue
        saved = _decode_section(path, metadata, tensors, section, type(target).__name__)
        try:
            target.load_state_dict(saved)
        except (KeyError, RuntimeError, TypeError, ValueError) as e:
            raise CheckpointError(
                f"checkpoint {path} has {section} state that does not fit: {_first_line(e)}"
            ) from None
    state = _loads(path, metadata.get("state", "{}"), tensors)
    if map_location is not None:
        state = _map_tensors(state, torch.device(map_location))
    return state


def latest_checkpoint(directory: str | os.PathLike[str]) -> Path | None:
    """The most recently modified ``*.safetensors`` file of ``directory``, if any.

    Ties in modification time are broken by name. Temporary files of an unfinished atomic
    write never match.

    Example:
        >>> import tempfile
        >>> latest_checkpoint(tempfile.mkdtemp()) is None
        True
    """
    directory = Path(directory)
    if not directory.is_dir():
        return None
    files = [p for p in directory.glob("*.safetensors") if p.is_file()]
    return max(files, key=lambda p: (p.stat().st_mtime_ns, p.name), default=None)


def _load_model(
    path: Path, model: nn.Module, tensors: dict[str, Tensor], metadata: dict[str, str]
) -> None:
    saved: dict[str, Any] = {
        k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")
    }
    saved.update(_loads(path, metadata.get("model_extra", "{}"), tensors))
    expected = model.state_dict()
    missing = [k for k in expected if k not in saved]
    unexpected = sorted(k for k in saved if k not in expected)
    mismatched = [
        f"{k} {tuple(saved[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if isinstance(v, Tensor) and isinstance(saved.get(k), Tensor) and saved[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_few(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatch {_few(mismatched)} (saved vs model)")
    if problems:
        raise CheckpointError(
            f"checkpoint {path} does not fit {type(model).__name__}: {'; '.join(problems)}"
        )
    try:
        model.load_state_dict(saved, strict=True)
    except (RuntimeError, ValueError, TypeError) as e:
        raise CheckpointError(
            f"checkpoint {path} does not fit {type(model).__name__}: {_first_line(e)}"
        ) from None


def _decode_section(
    path: Path, metadata: dict[str, str], tensors: dict[str, Tensor], section: str, cls: str
) -> Any:
    if section not in metadata:
        raise CheckpointError(f"checkpoint {path} holds no {section} state")
    stored = metadata.get(f"{section}_class")
    if stored != cls:
        raise CheckpointError(f"checkpoint {path} holds {section} state of {stored}, not of {cls}")
    return _loads(path, metadata[section], tensors)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}") from None
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror or e}") from None


def _read_header(path: Path, data: bytes) -> dict[str, Any]:
    if len(data) < 8:
        raise CheckpointError(f"checkpoint {path} is truncated ({len(data)} bytes)")
    n = int.from_bytes(data[:8], "little")
    if n > min(len(data) - 8, _MAX_HEADER):
        raise CheckpointError(f"checkpoint {path} is truncated or not a safetensors file")
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise CheckpointError(f"checkpoint {path} is corrupted: unreadable header") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"checkpoint {path} is corrupted: header is not a JSON object")
    return header


def _check_format(path: Path, header: dict[str, Any]) -> dict[str, str]:
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not a preimage checkpoint")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {metadata.get('format_version')!r}; "
            f"this preimage reads version {FORMAT_VERSION}"
        )
    return metadata


def _digest(tensors: dict[str, Tensor], metadata: dict[str, str]) -> str:
    h = hashlib.sha256()
    for key in sorted(k for k in metadata if k != _DIGEST):
        h.update(json.dumps([key, metadata[key]]).encode())
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def _to_cpu_copy(t: Tensor) -> Tensor:
    # A private contiguous copy: safetensors refuses tensors that share storage (tied weights,
    # views of one buffer), and the caller may keep training on the original.
    t = t.detach()
    return t.contiguous().clone() if t.device.type == "cpu" else t.to("cpu").contiguous()


def _encode_state(state: dict[str, Any], tensors: dict[str, Tensor]) -> dict[str, Any]:
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint state must be a dict, got {type(state).__name__}")
    out: dict[str, Any] = {}
    for key, value in state.items():
        if not isinstance(key, str) or key.startswith("__"):
            raise CheckpointError(
                f"checkpoint state keys must be strings not starting with '__', got {key!r}"
            )
        out[key] = _encode(value, "rng" if key == "rng" else f"state.{key}", tensors)
    return out


def _encode(obj: Any, name: str, tensors: dict[str, Tensor]) -> Any:
    if isinstance(obj, Tensor):
        if name in tensors:
            raise CheckpointError(f"two checkpoint entries would be named {name!r}")
        tensors[name] = _to_cpu_copy(obj)
        return {_TENSOR: name}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (bytes, bytearray)):
        return {_BYTES: base64.b64encode(bytes(obj)).decode("ascii")}
    if isinstance(obj, tuple):
        return {_TUPLE: [_encode(v, f"{name}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{name}.{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, f"{name}.{k}", tensors) for k, v in obj.items()}
        items = []
        for k, v in obj.items():
            if k is not None and not isinstance(k, (bool, int, float, str)):
                raise CheckpointError(f"cannot store dict key {k!r} of {name} in a checkpoint")
            items.append([k, _encode(v, f"{name}.{k}", tensors)])
        return {_ITEMS: items}
    raise CheckpointError(f"cannot store a {type(obj).__name__} ({name}) in a checkpoint")


def _decode(obj: Any, tensors: dict[str, Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if len(obj) == 1:
        ((key, value),) = obj.items()
        if key == _TENSOR:
            if value not in tensors:
                raise KeyError(value)
            return tensors[value]
        if key == _BYTES:
            return base64.b64decode(value)
        if key == _TUPLE:
            return tuple(_decode(v, tensors) for v in value)
        if key == _ITEMS:
            return {k: _decode(v, tensors) for k, v in value}
    return {k: _decode(v, tensors) for k, v in obj.items()}


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _loads(path: Path, text: str, tensors: dict[str, Tensor]) -> Any:
    try:
        return _decode(json.loads(text), tensors)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, RecursionError) as e:
        # RecursionError: a crafted file nesting its metadata deeper than Python's stack.
        raise CheckpointError(
            f"checkpoint {path} is corrupted: bad metadata ({type(e).__name__})"
        ) from None


def _map_tensors(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _map_tensors(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_map_tensors(v, device) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_map_tensors(v, device) for v in obj)
    return obj


def _few(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return f"[{shown}{', ...' if len(items) > limit else ''}] ({len(items)})"


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
