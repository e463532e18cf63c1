"""fastdl: fast, exact, tested kernels for deep-learning pipelines.

Subpackages are imported on first use (``fastdl.sampling``, ...), so
``import fastdl`` stays cheap and never imports torch.
"""

from __future__ import annotations

import importlib

from fastdl._version import __version__

__all__ = ["__version__", "show_config", "config", "sampling", "neighbors", "cluster", "graph",
           "embed", "debug", "nn", "decoding", "distill", "compress"]

_SUBPACKAGES = {"sampling", "neighbors", "cluster", "graph", "embed", "debug", "nn", "decoding",
                "distill", "compress"}


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"fastdl.{name}")
    raise AttributeError(f"module 'fastdl' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _SUBPACKAGES)


def config() -> dict:
    """How this copy of fastdl was built and what it will use at run time."""
    import platform

    import numpy

    from fastdl import _build_info
    from fastdl._lib._openmp_info import max_threads, openmp_enabled

    return {
        "fastdl": __version__,
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
