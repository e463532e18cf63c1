"""Temperature annealing for distillation."""

from __future__ import annotations

import math
import numbers

from dlkernels._lib.validation import check_choice
from dlkernels.distill.loss import _check_temperature

__all__ = ["TemperatureSchedule"]

_KINDS = ("constant", "linear", "cosine", "exponential")


class TemperatureSchedule:
    """The distillation temperature as a function of the step (or epoch).

    Parameters
    ----------
    start : float
        Temperature at step 0 (> 0).
    end : float, optional
        Temperature from ``total`` on (> 0); default ``start``.
    total : int, default 1
        Steps (or epochs) over which it moves from ``start`` to ``end``.
    kind : {"constant", "linear", "cosine", "exponential"}, default "constant"
        ``linear``: straight line; ``cosine``: half a cosine (slow at both
        ends); ``exponential``: geometric, ``start * (end / start) ** (s / total)``.
    per : {"step", "epoch"}, default "step"
        What :class:`~dlkernels.distill.Distiller` counts when it asks.

    Examples
    --------
    >>> from dlkernels.distill import TemperatureSchedule
    >>> sched = TemperatureSchedule(8.0, end=2.0, total=4, kind="linear")
    >>> [sched(s) for s in range(6)]
    [8.0, 6.5, 5.0, 3.5, 2.0, 2.0]
    >>> TemperatureSchedule(8.0, end=2.0, total=2, kind="exponential")(1)
    4.0
    """

    def __init__(self, start: float, *, end: float | None = None, total: int = 1,
                 kind: str = "constant", per: str = "step") -> None:
        self.start: float = _check_temperature(start)
        self.end: float = self.start if end is None else _check_temperature(end)
        if isinstance(total, bool) or not isinstance(total, numbers.Integral) or total < 1:
            raise ValueError(f"total must be an int >= 1, got {total!r}")
        check_choice(kind, "kind", _KINDS)
        if per not in ("step", "epoch"):
            raise ValueError(f"per must be 'step' or 'epoch', got {per!r}")
        self.total: int = int(total)
        self.kind: str = kind
        self.per: str = per

    def __call__(self, step: int) -> float:
        """The temperature at ``step`` (steps past ``total`` give ``end``)."""
        if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
            raise ValueError(f"step must be a non-negative int, got {step!r}")
        if self.kind == "constant" or step == 0:
            return self.start
        if step >= self.total:
            return self.end
        f = step / self.total
        # Weighted means of the two ends rather than start + (end - start) f,
        # which can cancel to 0 where they differ by orders of magnitude; every
        # value stays between the ends.
        if self.kind == "exponential":
            ratio = self.end / self.start
            if 0.0 < ratio < math.inf:
                t = self.start * ratio ** f
            else:  # the ratio itself under- or overflowed: interpolate the logs
                t = math.exp(math.log(self.start) * (1 - f) + math.log(self.end) * f)
        else:
            w = f if self.kind == "linear" else 0.5 * (1 - math.cos(math.pi * f))
            t = self.start * (1 - w) + self.end * w
        return min(max(t, min(self.start, self.end)), max(self.start, self.end))

    def __repr__(self) -> str:
        return (f"TemperatureSchedule(start={self.start}, end={self.end}, total={self.total}, "
                f"kind={self.kind!r}, per={self.per!r})")
