"""Debugging tools for torch training code (needs torch).

.. autosummary::
   :toctree: generated/

"""

__all__: list[str] = []
