"""One way for the torch-level packages to import torch, with one message when it is missing.

torch is an optional dependency: ``import dlkernels.decoding`` (distill, debug, nn,
compress) without it raises a single ImportError that says how to install it,
instead of a ModuleNotFoundError from deep inside the package.
"""

from __future__ import annotations

import importlib
import types

__all__ = ["require_torch"]


def require_torch(feature: str) -> types.ModuleType:
    """Import and return torch, or raise an ImportError naming ``feature`` and the extra.

    Parameters
    ----------
    feature : str
        What needs torch, as the user would call it (``"dlkernels.decoding"``).

    Raises
    ------
    ImportError
        ``'<feature> needs torch: pip install "dlkernels[torch]"'``, chained from
        the original error.
    """
    try:
        return importlib.import_module("torch")
    except ImportError as exc:
        raise ImportError(f'{feature} needs torch: pip install "dlkernels[torch]"') from exc
