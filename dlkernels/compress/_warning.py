"""The warning that pruning calls give when they do less, or more, than a user would expect."""

from __future__ import annotations

__all__ = ["PruningWarning"]


class PruningWarning(UserWarning):
    """A pruning call removed a whole layer's weights, or nothing at all.

    :func:`~dlkernels.compress.prune_magnitude` with ``scope="global"`` warns
    when the global threshold zeroes every weight of a layer (the layer then
    outputs only its bias); :func:`~dlkernels.compress.prune_units` warns when
    it removes no unit although ``amount > 0``. The message names the layer or
    the reason.
    """

    __module__ = "dlkernels.compress"
