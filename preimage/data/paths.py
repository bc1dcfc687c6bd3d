"""Where datasets live on disk.

One data root holds one folder per dataset (``<root>/mnist/``, ...). The root is, in order of
precedence, the path the caller passes (the CLI's ``--data-dir``), the environment variable
``PREIMAGE_DATA``, or ``~/.cache/preimage``. Nothing here creates folders: resolving a path has
no side effect, only a download writes.

References:
    No paper; a convention shared with torchvision-style dataset folders so that an existing
    ``mnist/`` folder with the official IDX files can be reused as is.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["DATA_ENV_VAR", "data_root", "dataset_dir"]

DATA_ENV_VAR = "PREIMAGE_DATA"
"""Environment variable naming the data root when no explicit path is given."""


def data_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Resolve the data root.

    Args:
        explicit: A path given by the caller; wins over everything else. ``~`` is expanded.

    Returns:
        ``explicit`` if given, else ``$PREIMAGE_DATA`` if set and non-empty, else
        ``~/.cache/preimage``. The folder need not exist.

    Example:
        >>> from pathlib import Path
        >>> data_root("/tmp/my-data") == Path("/tmp/my-data")
        True
    """
    if explicit is not None:
        return Path(explicit).expanduser()
    from_env = os.environ.get(DATA_ENV_VAR, "")
    if from_env:
        return Path(from_env).expanduser()
    return Path.home() / ".cache" / "preimage"


def dataset_dir(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    files: Iterable[str] = (),
) -> Path:
    """Resolve the folder of one dataset, accepting either the data root or the folder itself.

    Users pass either a data root (holding ``<name>/``) or the dataset folder directly; both
    must work. The folder is, in order:

    1. the resolved root itself if it already holds one of ``files``;
    2. ``<root>/<name>`` if that folder exists;
    3. the root itself if its last component is ``name``;
    4. ``<root>/<name>`` otherwise (where a download would put the files).

    Args:
        name: Dataset folder name, e.g. ``"mnist"``.
        root: Data root or dataset folder; ``None`` resolves via :func:`data_root`.
        files: File names that mark a folder as holding this dataset.

    Returns:
        The dataset folder (it need not exist).

    Example:
        >>> from pathlib import Path
        >>> dataset_dir("mnist", "/nonexistent/root") == Path("/nonexistent/root/mnist")
        True
        >>> dataset_dir("mnist", "/nonexistent/mnist") == Path("/nonexistent/mnist")
        True
    """
    base = data_root(root)
    if any((base / f).is_file() for f in files):
        return base
    nested = base / name
    if nested.is_dir() or base.name != name:
        return nested
    return base
