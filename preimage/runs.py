r"""Run directories: where every ``train`` and ``run`` leaves its configuration and results.

A run directory holds

* ``config.json``: the resolved configuration with ``argv``, ``seed``, ``command``, library and
  platform ``versions`` and a UTC ``created`` timestamp, so that a result can be traced back to
  what produced it;
* ``metrics.json``: a flat or nested mapping of results, merge-updated as a run goes on;
* ``checkpoints/*.safetensors`` and ``figures/*.png``;
* ``report.html``: a self-contained report (see :mod:`preimage.report.html`).

Every file is written atomically (a temporary file in the same folder, then :func:`os.replace`),
so an interruption or a failed serialisation never destroys an existing file, and a
:class:`RunDir` never deletes anything. JSON has no NaN or infinity; :func:`to_jsonable` writes
every non-finite float as ``null``.

References:
    Design note of preimage (``DESIGN.md``, "Run directory" contract), following the minGPT
    convention of writing every run's configuration next to its outputs.

Example:
    >>> import tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> run = RunDir(tmp.name)
    >>> run.write_config({"lr": 1e-3, "depth": 4}, argv=["train"], seed=0, command="train")
    >>> run.read_config()["config"]
    {'lr': 0.001, 'depth': 4}
    >>> _ = run.write_metrics({"loss": float("nan"), "accuracy": 0.75})
    >>> run.write_metrics({"loss": 0.5})
    {'loss': 0.5, 'accuracy': 0.75}
    >>> tmp.cleanup()
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import json
import math
import os
import platform
import re
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import torch

from preimage.errors import ConfigError, DataError

__all__ = [
    "RunDir",
    "atomic_write_bytes",
    "atomic_write_text",
    "environment_versions",
    "to_jsonable",
]

_MAX_ARRAY_SIZE = 10_000
"""Default largest array :func:`to_jsonable` writes inline; bigger ones belong in checkpoints."""

_SIMPLE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; some platforms (Windows) cannot open directories.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    r"""Write ``data`` to ``path`` so that readers see either the old or the complete new file.

    The bytes go to a uniquely named temporary file next to ``path`` which is flushed, synced
    and then renamed over ``path`` with :func:`os.replace` (atomic on POSIX and Windows). On any
    error the temporary file is removed and an existing ``path`` is left untouched. The file is
    created with mode ``0o666`` filtered by the process umask, like :func:`open` would.

    Args:
        path: destination file; missing parent folders are created.
        data: the complete new content.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ConfigError: if ``path`` is an existing folder.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> tmp = tempfile.TemporaryDirectory()
        >>> p = atomic_write_bytes(Path(tmp.name) / "a.bin", b"abc")
        >>> p.read_bytes()
        b'abc'
        >>> tmp.cleanup()
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"cannot write file {path}: it is a folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    r"""Write ``text`` (UTF-8) atomically; see :func:`atomic_write_bytes`.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> tmp = tempfile.TemporaryDirectory()
        >>> atomic_write_text(Path(tmp.name) / "a.txt", "héllo").read_text("utf-8")
        'héllo'
        >>> tmp.cleanup()
    """
    return atomic_write_bytes(path, text.encode("utf-8"))


def _json_key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, enum.Enum):
        return _json_key(key.value)
    if isinstance(key, np.generic):
        return _json_key(key.item())
    if isinstance(key, PurePath):
        return str(key)
    if key is None or isinstance(key, (bool, int, float)):
        # Same spelling as json.dumps gives non-string keys.
        return json.dumps(key)
    raise ConfigError(f"cannot use a {type(key).__name__} as a JSON object key")


def _float(value: float) -> float | None:
    return value if math.isfinite(value) else None


def to_jsonable(obj: Any, *, max_array_size: int = _MAX_ARRAY_SIZE) -> Any:
    r"""Convert ``obj`` into plain JSON types (dict, list, str, int, float, bool, None).

    Handles mappings, sequences, sets (sorted), dataclass instances (by field), enums (by value),
    paths, dates, NumPy and PyTorch scalars, and NumPy arrays / tensors of at most
    ``max_array_size`` elements (nested lists). Non-finite floats (NaN, :math:`\pm\infty`) become
    ``None`` because JSON cannot represent them; ``json.dumps(..., allow_nan=False)`` then
    succeeds on the result.

    Args:
        obj: the object to convert.
        max_array_size: largest array or tensor written inline.

    Returns:
        A structure that :func:`json.dumps` serialises with ``allow_nan=False``.

    Raises:
        ConfigError: for objects without a JSON form, too large arrays, complex numbers, keys
            that collide after conversion, or reference cycles.

    Example:
        >>> import numpy as np, torch
        >>> from pathlib import Path
        >>> to_jsonable({"a": (1, 2), "b": np.float32(0.5), "c": torch.tensor(float("nan")),
        ...              "d": Path("x/y"), "e": np.arange(3)})
        {'a': [1, 2], 'b': 0.5, 'c': None, 'd': 'x/y', 'e': [0, 1, 2]}
    """
    return _convert(obj, max_array_size, set())


def _convert(obj: Any, max_size: int, active: set[int]) -> Any:
    if obj is None or isinstance(obj, (str, bool)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return _float(float(obj))
    if isinstance(obj, enum.Enum):
        return _convert(obj.value, max_size, active)
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, (_dt.datetime, _dt.date, _dt.time)):
        return obj.isoformat()
    if isinstance(obj, (torch.dtype, torch.device)):
        return str(obj)
    if isinstance(obj, complex):
        raise ConfigError("cannot write a complex number to JSON")
    if isinstance(obj, np.generic):
        if isinstance(obj, np.complexfloating):
            raise ConfigError("cannot write a complex number to JSON")
        return _convert(obj.item(), max_size, active)
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return _convert_array(obj, max_size, active)
    if isinstance(obj, (bytes, bytearray)):
        raise ConfigError("cannot write raw bytes to JSON")

    key = id(obj)
    if key in active:
        raise ConfigError(f"cannot write a self-referencing {type(obj).__name__} to JSON")
    active.add(key)
    try:
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return {
                f.name: _convert(getattr(obj, f.name), max_size, active)
                for f in dataclasses.fields(obj)
            }
        if isinstance(obj, Mapping):
            out: dict[str, Any] = {}
            for k, v in obj.items():
                name = _json_key(k)
                if name in out:
                    raise ConfigError(f"two keys of a mapping both become {name!r} in JSON")
                out[name] = _convert(v, max_size, active)
            return out
        if isinstance(obj, (set, frozenset)):
            try:
                items = sorted(obj)
            except TypeError:
                items = sorted(obj, key=repr)
            return [_convert(v, max_size, active) for v in items]
        if isinstance(obj, Sequence):
            return [_convert(v, max_size, active) for v in obj]
    finally:
        active.discard(key)
    raise ConfigError(f"cannot write a {type(obj).__name__} to JSON")


def _convert_array(obj: np.ndarray | torch.Tensor, max_size: int, active: set[int]) -> Any:
    size = obj.numel() if isinstance(obj, torch.Tensor) else obj.size
    if obj.ndim > 0 and size > max_size:
        raise ConfigError(
            f"array of {size} elements is too large for JSON (limit {max_size}); "
            "save it to a checkpoint instead"
        )
    if isinstance(obj, torch.Tensor):
        if obj.is_complex():
            raise ConfigError("cannot write a complex tensor to JSON")
        values = obj.detach().cpu().tolist()
    else:
        if np.iscomplexobj(obj):
            raise ConfigError("cannot write a complex array to JSON")
        values = obj.tolist()
    return _convert(values, max_size, active)


def _cuda_info() -> dict[str, Any]:
    available = torch.cuda.is_available()
    return {
        "available": available,
        "version": torch.version.cuda,
        "device_count": torch.cuda.device_count() if available else 0,
        "device_name": torch.cuda.get_device_name(0) if available else None,
    }


def environment_versions() -> dict[str, Any]:
    r"""Versions of Python, the main libraries and the platform, for ``config.json``.

    Returns:
        A JSON-ready dict with keys ``python``, ``torch``, ``numpy``, ``preimage``,
        ``platform``, ``machine``, ``cpu_count`` and ``cuda`` (availability, CUDA version,
        device count and the name of device 0).

    Example:
        >>> info = environment_versions()
        >>> sorted(info)
        ['cpu_count', 'cuda', 'machine', 'numpy', 'platform', 'preimage', 'python', 'torch']
    """
    from preimage import __version__

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "preimage": __version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cuda": _cuda_info(),
    }


def _dumps(obj: Any) -> str:
    return json.dumps(to_jsonable(obj), indent=2, allow_nan=False, ensure_ascii=False) + "\n"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path} is not valid JSON ({err.msg} at line {err.lineno})") from err
    except RecursionError:
        raise DataError(f"{path} nests too deeply to be a preimage file") from None
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 text") from err


class RunDir:
    r"""One run's output folder: configuration, metrics, checkpoints, figures and report.

    The folder and its ``checkpoints/`` and ``figures/`` subfolders are created when a file is
    first written into them; existing content is kept. :meth:`open` is how a run claims one;
    only :meth:`open` with ``overwrite`` deletes files. JSON files are replaced atomically.

    Args:
        path: the run folder. It may exist (a resumed run) but must not be a file.

    Raises:
        ConfigError: if ``path`` (or one of its subfolders) exists and is not a folder.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> tmp = tempfile.TemporaryDirectory()
        >>> run = RunDir(Path(tmp.name) / "runs" / "exp1")
        >>> run.path.exists()
        False
        >>> run.figure_path("curves").name, run.checkpoint_path("best").name
        ('curves.png', 'best.safetensors')
        >>> run.checkpoints.is_dir(), run.figures.is_dir()
        (True, True)
        >>> run.read_metrics()
        {}
        >>> tmp.cleanup()
    """

    CONFIG = "config.json"
    METRICS = "metrics.json"
    REPORT = "report.html"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        if os.fspath(path) == "":
            raise ConfigError("the run directory must not be an empty path")
        self.path = Path(path)
        # Folders are made when the first file is written, so a run refused by validation
        # leaves no empty run directory behind.
        for folder in (self.path, self.path / "checkpoints", self.path / "figures"):
            if folder.exists() and not folder.is_dir():
                raise ConfigError(f"run directory {folder} exists and is not a folder")

    RUN_FILES: tuple[str, ...] = (CONFIG, METRICS, REPORT)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        kind: str,
        resume: bool = False,
        overwrite: bool = False,
    ) -> RunDir:
        """Open ``path`` for a run of ``kind`` (``"train"``, ``"run spheres"``, ...).

        A run directory belongs to one run: an existing ``config.json`` is refused unless
        ``resume`` continues a run of the same kind or ``overwrite`` replaces it (then the old
        run's ``config.json``, ``metrics.json``, ``report.html``, checkpoints and figures are
        removed first, and nothing else). Stale ``*.tmp`` files of a killed write are removed.

        Raises:
            ConfigError: the folder holds another run (the message says what to pass).
            DataError: the folder cannot be created or written.

        Example:
            >>> import tempfile
            >>> tmp = tempfile.mkdtemp()
            >>> RunDir.open(tmp, kind="train").write_config({}, command="train")
            >>> RunDir.open(tmp, kind="run spheres")
            Traceback (most recent call last):
            ...
            preimage.errors.ConfigError: ... holds a 'train' run; choose another --out ...
        """
        run = cls(path)
        if run.config_path.is_file():
            try:
                old = str(run.read_config().get("command"))
            except DataError:
                old = "unreadable"
            if overwrite:
                run._remove_run_files()
            elif old != kind:
                raise ConfigError(
                    f"{run.path} holds a {old!r} run; choose another --out or pass --overwrite "
                    "to replace it"
                )
            elif not resume:
                again = "pass --resume to continue it, " if kind == "train" else ""
                raise ConfigError(
                    f"{run.path} already holds a {kind!r} run; {again}pass --overwrite to "
                    "replace it, or choose another --out"
                )
        run._remove_stale_temporaries()
        # The folder itself is made by the first write; what can be checked now is checked now.
        existing = run.path
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise ConfigError(f"cannot make run directory {run.path}: {existing} is not a folder")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise DataError(f"cannot write run directory {run.path}: {existing} is not writable")
        return run

    def _remove_run_files(self) -> None:
        for name in self.RUN_FILES:
            (self.path / name).unlink(missing_ok=True)
        for folder, pattern in ((self.checkpoints, "*.safetensors"), (self.figures, "*.png")):
            if folder.is_dir():
                for old in folder.glob(pattern):
                    old.unlink()

    def _remove_stale_temporaries(self) -> None:
        for folder in (self.path, self.checkpoints, self.figures):
            if folder.is_dir():
                for stale in folder.glob(".*.tmp"):
                    stale.unlink(missing_ok=True)

    def record_resume(self, argv: Sequence[str] | None, changes: Mapping[str, Any]) -> None:
        """Append a resume (when, argv, changed settings) to ``config.json``'s ``history``.

        The original ``argv`` and ``created`` stay as they were, so the run's provenance is kept.
        """
        record = self.read_config()
        history = list(record.get("history") or [])
        history.append(
            {
                "resumed": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "argv": None if argv is None else [str(a) for a in argv],
                "changes": dict(changes),
            }
        )
        record["history"] = history
        atomic_write_text(self.config_path, _dumps(record))

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    @property
    def checkpoints(self) -> Path:
        """Folder of ``*.safetensors`` checkpoints."""
        return self.path / "checkpoints"

    @property
    def figures(self) -> Path:
        """Folder of ``*.png`` figures."""
        return self.path / "figures"

    @property
    def config_path(self) -> Path:
        """Path of ``config.json``."""
        return self.path / self.CONFIG

    @property
    def metrics_path(self) -> Path:
        """Path of ``metrics.json``."""
        return self.path / self.METRICS

    @property
    def report_path(self) -> Path:
        """Path of ``report.html``."""
        return self.path / self.REPORT

    @staticmethod
    def _file_name(name: str, suffix: str) -> str:
        # Names come from configs and CLI flags; refusing separators keeps files inside the run.
        if not _SIMPLE_NAME.match(name):
            raise ConfigError(
                f"invalid file name {name!r}: use letters, digits, '.', '_', '+' or '-' only"
            )
        return name if name.endswith(suffix) else name + suffix

    def figure_path(self, name: str) -> Path:
        """Path of figure ``name`` (``.png`` is appended unless present) in :attr:`figures`.

        The folder is created, since the path is asked for to write it.
        """
        file = self._file_name(name, ".png")
        self.figures.mkdir(parents=True, exist_ok=True)
        return self.figures / file

    def checkpoint_path(self, name: str) -> Path:
        """Path of checkpoint ``name`` (``.safetensors`` appended unless present); creates
        :attr:`checkpoints`."""
        file = self._file_name(name, ".safetensors")
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        return self.checkpoints / file

    def write_config(
        self,
        config: Mapping[str, Any] | Any,
        *,
        argv: Sequence[str] | None = None,
        seed: int | None = None,
        command: str | None = None,
    ) -> None:
        r"""Write ``config.json``: the resolved configuration and where it came from.

        The file holds ``command``, ``argv``, ``seed``, ``created`` (UTC, ISO 8601),
        ``versions`` (:func:`environment_versions`) and ``config`` (``config`` converted by
        :func:`to_jsonable`, so a dataclass config is accepted too). An existing
        ``config.json`` is replaced atomically.

        Args:
            config: the resolved configuration (a mapping or a dataclass instance).
            argv: the command line that started the run, if any.
            seed: the random seed, if any.
            command: the CLI command or study name, if any.

        Raises:
            ConfigError: if the configuration has no JSON form (nothing is written then).
        """
        record = {
            "command": command,
            "argv": None if argv is None else [str(a) for a in argv],
            "seed": seed,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "versions": environment_versions(),
            "config": config,
        }
        atomic_write_text(self.config_path, _dumps(record))

    def read_config(self) -> dict[str, Any]:
        """Contents of ``config.json``.

        Raises:
            DataError: if ``config.json`` is missing or not valid JSON.
        """
        if not self.config_path.is_file():
            raise DataError(f"{self.config_path} does not exist: not a run directory")
        return _read_json(self.config_path)

    def read_metrics(self) -> dict[str, Any]:
        """Contents of ``metrics.json``, or ``{}`` before the first :meth:`write_metrics`.

        Raises:
            DataError: if ``metrics.json`` is not a valid JSON object.
        """
        if not self.metrics_path.exists():
            return {}
        metrics = _read_json(self.metrics_path)
        if not isinstance(metrics, dict):
            raise DataError(f"{self.metrics_path} does not hold a JSON object")
        return metrics

    def write_metrics(self, metrics: Mapping[str, Any]) -> dict[str, Any]:
        r"""Merge ``metrics`` into ``metrics.json`` and return the merged content.

        Top-level keys of ``metrics`` replace those already stored; other stored keys are kept.
        Values pass through :func:`to_jsonable` (NaN and infinities become ``null``). The
        whole new content is serialised before anything is written, so a value without JSON
        form leaves the old file intact.

        Args:
            metrics: new or updated results.

        Returns:
            The merged metrics as written.

        Raises:
            ConfigError: if a value has no JSON form.
            DataError: if the existing ``metrics.json`` is unreadable (it is then not replaced).
        """
        if not isinstance(metrics, Mapping):
            raise ConfigError(f"metrics must be a mapping, got {type(metrics).__name__}")
        merged = self.read_metrics()
        merged.update(to_jsonable(metrics))
        atomic_write_text(self.metrics_path, _dumps(merged))
        return merged
