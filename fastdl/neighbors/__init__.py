"""Nearest-neighbour search: an exact KD-tree and locality-sensitive hashing.

.. autosummary::
   :toctree: generated/

"""

__all__: list[str] = []
