"""dlkernels: fast, exact, tested kernels for deep-learning pipelines.

Subpackages are imported on first use (``dlkernels.sampling``, ...), so
``import dlkernels`` stays cheap and never imports torch.
"""

from __future__ import annotations

import importlib
import types

from dlkernels._lib.persist import FileFormatError
from dlkernels._version import __version__

__all__ = ["__version__", "FileFormatError", "show_config", "config", "sampling", "neighbors", "cluster", "graph",
           "embed", "debug", "nn", "decoding", "distill", "compress", "distributed"]

_SUBPACKAGES = {"sampling", "neighbors", "cluster", "graph", "embed", "debug", "nn", "decoding",
                "distill", "compress", "distributed"}


def __getattr__(name: str) -> types.ModuleType:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"dlkernels.{name}")
    raise AttributeError(f"module 'dlkernels' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _SUBPACKAGES)


def config() -> dict[str, str | int]:
    """How this copy of dlkernels was built and what it will use at run time.

    Never imports torch: the torch version comes from the installed package's
    metadata, and CUDA is reported only if torch is already imported
    (``dlkernels info`` imports it first when it is installed).

    Returns
    -------
    dict of str to str or int
        Version, Python, platform, numpy, the build's Cython and compiler,
        OpenMP on or off, the default thread count, the torch version (or
        that it is not installed) and whether CUDA is usable, with the device
        count and names.
    """
    import platform

    import numpy

    from dlkernels import _build_info
    from dlkernels._lib._openmp_info import max_threads, openmp_enabled

    return {
        "dlkernels": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": numpy.__version__,
        "cython (build time)": _build_info.cython_version,
        "compiler": _build_info.compiler,
        "openmp": (f"on (OpenMP {_build_info.openmp_version})".replace(" (OpenMP )", "")
                   if openmp_enabled() else "off: kernels run single-threaded"),
        "default threads": max_threads(),
        **_torch_config(),
    }


def _torch_config() -> dict[str, str | int]:
    """The ``torch`` and ``cuda`` entries of :func:`config`."""
    import importlib.util
    import sys
    from importlib import metadata

    if importlib.util.find_spec("torch") is None:  # (finds without importing)
        return {"torch": 'not installed (pip install "dlkernels[torch]")', "cuda": "no (no torch)"}
    try:
        version = metadata.version("torch")
    except metadata.PackageNotFoundError:  # importable, but not an installed distribution
        version = "installed (version unknown)"
    torch = sys.modules.get("torch")
    if torch is None:
        return {"torch": version, "cuda": "not checked (torch is not imported)"}
    built_for = getattr(torch.version, "cuda", None)
    runtime = f"CUDA {built_for}" if built_for else f"ROCm {getattr(torch.version, 'hip', None)}"
    if not torch.cuda.is_available():
        cuda = (f"no (torch built for CUDA {built_for}, no device found)" if built_for
                else "no (a CPU-only build of torch)")
    else:
        count = torch.cuda.device_count()
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(count))
        cuda = f"yes: {count} device{'s' if count != 1 else ''} ({names}), {runtime}"
    return {"torch": version, "cuda": cuda}


def show_config() -> None:
    """Print :func:`config`: version, build tools, OpenMP, default threads, torch and CUDA."""
    _print_config(config())


def _print_config(config: dict[str, str | int]) -> None:
    for key, value in config.items():
        print(f"{key:>20}: {value}")
