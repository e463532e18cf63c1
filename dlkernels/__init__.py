"""dlkernels: fast, exact, tested kernels for deep-learning pipelines.

Subpackages are imported on first use (``dlkernels.sampling``, ...), so
``import dlkernels`` stays cheap and never imports torch.
"""

from __future__ import annotations

import importlib

from dlkernels._lib.persist import FileFormatError
from dlkernels._version import __version__

__all__ = ["__version__", "FileFormatError", "show_config", "config", "sampling", "neighbors", "cluster", "graph",
           "embed", "debug", "nn", "decoding", "distill", "compress", "distributed"]

_SUBPACKAGES = {"sampling", "neighbors", "cluster", "graph", "embed", "debug", "nn", "decoding",
                "distill", "compress", "distributed"}


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"dlkernels.{name}")
    raise AttributeError(f"module 'dlkernels' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _SUBPACKAGES)


def config() -> dict:
    """How this copy of dlkernels was built and what it will use at run time."""
    import platform

    import numpy

    from dlkernels import _build_info
    from dlkernels._lib._openmp_info import max_threads, openmp_enabled

    return {
        "dlkernels": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy (run time)": numpy.__version__,
        "numpy (build time)": _build_info.numpy_build_version,
        "cython (build time)": _build_info.cython_version,
        "compiler": _build_info.compiler,
        "openmp": (f"on (OpenMP {_build_info.openmp_version})".replace(" (OpenMP )", "")
                   if openmp_enabled() else "off: kernels run single-threaded"),
        "default threads": max_threads(),
    }


def show_config() -> None:
    """Print :func:`config`: version, build tools, OpenMP on or off, default threads."""
    for key, value in config().items():
        print(f"{key:>20}: {value}")
