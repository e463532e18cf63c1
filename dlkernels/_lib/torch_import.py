"""One clear error for the torch-level packages when torch is missing.

``dlkernels.nn`` (and the other torch-level packages that choose to) call
:func:`require_torch` before anything else, so a user without torch gets one
``ImportError`` that says how to install it, rather than a ``ModuleNotFoundError``
from deep inside a submodule.
"""

from __future__ import annotations

import importlib

__all__ = ["require_torch"]

INSTALL_HINT = 'pip install "dlkernels[torch]"'


def require_torch(feature: str):
    """Import and return ``torch``, or raise an ImportError naming ``feature`` and the fix.

    Parameters
    ----------
    feature : str
        What needs torch, for the message (e.g. ``"dlkernels.nn"``).

    Raises
    ------
    ImportError
        torch is not installed (or cannot be imported); the original error is
        chained as ``__cause__``.
    """
    try:
        return importlib.import_module("torch")
    except ImportError as exc:
        raise ImportError(f"{feature} needs PyTorch, which is not installed (or failed to "
                          f"import: {exc}); install it with: {INSTALL_HINT}") from exc
