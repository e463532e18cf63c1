"""Warning classes shared by the facades."""

from __future__ import annotations

__all__ = ["ConvergenceWarning"]


class ConvergenceWarning(UserWarning):
    """An iterative method stopped at its iteration limit before it converged.

    As scikit-learn's ``sklearn.exceptions.ConvergenceWarning``: the result is
    usable, but more iterations (a larger ``max_iter``) or a better start would
    change it.
    """
