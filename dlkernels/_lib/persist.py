"""``save(path)`` / ``load(path)`` for objects that hold data.

Files are ``numpy.savez`` archives read back with ``allow_pickle=False``: loading
a file never executes code. Each archive records which class wrote it and a
format version, so a wrong or newer file is refused with a clear message.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["save_arrays", "load_arrays"]

FORMAT_VERSION = 1


def save_arrays(path, kind: str, **arrays) -> None:
    """Write ``arrays`` (numpy arrays or scalars) to ``path`` as an npz archive."""
    np.savez(os.fspath(path), __kind__=np.array(kind), __version__=np.array(FORMAT_VERSION),
             **{name: np.asarray(value) for name, value in arrays.items()})


def load_arrays(path, kind: str) -> dict[str, np.ndarray]:
    """Read an archive written by :func:`save_arrays` for class ``kind``."""
    with np.load(os.fspath(path), allow_pickle=False) as archive:
        found = str(archive["__kind__"]) if "__kind__" in archive.files else None
        if found != kind:
            raise ValueError(f"path holds a {found or 'foreign'} archive, not a {kind}: {path}")
        version = int(archive["__version__"])
        if version > FORMAT_VERSION:
            raise ValueError(f"path was written by a newer dlkernels (format {version}): {path}")
        return {name: archive[name] for name in archive.files if not name.startswith("__")}
