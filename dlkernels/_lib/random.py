"""The ``rng`` argument of every dlkernels function (Scientific Python SPEC 7)."""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["check_rng", "draw_key"]


def check_rng(rng, name: str = "rng") -> np.random.Generator:
    """Turn ``None``, an int seed or a ``numpy.random.Generator`` into a Generator.

    ``None`` draws fresh entropy from the operating system. A legacy
    ``RandomState`` is refused, because it cannot be advanced reproducibly from here.
    """
    if rng is None or isinstance(rng, np.random.Generator):
        return np.random.default_rng(rng)
    if isinstance(rng, (bool, np.bool_)):
        raise TypeError(f"{name} must be None, an int or a numpy.random.Generator, got {rng!r}")
    if isinstance(rng, numbers.Integral):
        if rng < 0:
            raise ValueError(f"{name} must be a non-negative int seed, got {rng}")
        return np.random.default_rng(int(rng))
    if isinstance(rng, np.random.SeedSequence):
        return np.random.default_rng(rng)
    raise TypeError(
        f"{name} must be None, an int or a numpy.random.Generator, got {type(rng).__name__}"
    )


def draw_key(rng, name: str = "rng") -> int:
    """One 64-bit key for a compiled kernel's counter-based streams.

    Each call advances the Generator by one draw, so two calls with the same
    Generator give different keys, and the same seed gives the same sequence.
    """
    return int(check_rng(rng, name).integers(0, 2**64, dtype=np.uint64))
