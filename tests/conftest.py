"""Shared fixtures and helpers for the dlkernels test suite.

The tests import the *installed* dlkernels (pyproject.toml sets
``--import-mode=importlib``); :func:`pytest_sessionstart` refuses to run against
the bare source tree, whose compiled kernels do not exist.

Statistical tests draw at a fixed seed and compare with a chi-square test at
``ALPHA``: if the code under test were exactly right, a test would fail at a
randomly chosen seed with probability ALPHA (its false-alarm rate). At the fixed
seed the outcome is deterministic; it can only flip when the random streams of a
kernel change, and then again with probability ALPHA per test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

REPO = Path(__file__).resolve().parents[1]
SEED = 20240611
# False-alarm rate of every chi-square test in this suite (see the module docstring).
ALPHA = 1e-4
THREAD_COUNTS = (1, 2, 4)

# The default run is a gate: derandomized, it tries the same examples on every
# machine and every run, so it fails only when the code changes. New examples are
# hunted with `make fuzz` (the "fuzz" profile: fresh random ones, 500 a test).
settings.register_profile(
    "dlkernels",
    deadline=None,  # the first call of a kernel may page in a shared object
    database=None,  # keep the checkout clean
    derandomize=True,
    max_examples=40,
    report_multiple_bugs=False,  # shrink one failure, not every distinct one (keeps failing runs short)
    # The fixtures used inside @given tests return stateless check functions.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture],
)
settings.register_profile("fuzz", parent=settings.get_profile("dlkernels"), derandomize=False,
                          max_examples=500, print_blob=True)
settings.load_profile(os.environ.get("DLKERNELS_HYPOTHESIS_PROFILE", "dlkernels"))


def pytest_collection_modifyitems(items):
    """Mark every hypothesis test ``fuzz``, for ``make fuzz`` (``pytest -m fuzz``)."""
    for item in items:
        if getattr(getattr(item, "obj", None), "is_hypothesis_test", False):  # set by @given
            item.add_marker(pytest.mark.fuzz)


def pytest_sessionstart(session):
    import dlkernels

    where = Path(dlkernels.__file__).resolve().parent
    in_site = any(part in ("site-packages", "dist-packages") for part in where.parts)
    if where == REPO / "dlkernels" or not in_site:
        raise pytest.UsageError(
            f"the tests must run against an installed dlkernels, but `import dlkernels` found "
            f"{where}. Install it (pip install '.[test]') and run the `pytest` of that "
            f"environment; `python -m pytest` from the repository root and editable "
            f"installs import the bare source tree instead."
        )


# -- randomness ------------------------------------------------------------------
@pytest.fixture
def seed() -> int:
    """The fixed seed of the statistical tests."""
    return SEED


@pytest.fixture
def rng(seed) -> np.random.Generator:
    """A fresh Generator at the fixed seed, for making test data."""
    return np.random.default_rng(seed)


# -- statistics -------------------------------------------------------------------
def chisquare_pvalue(observed, probabilities, *, min_expected: float = 5.0) -> float:
    """p-value of a chi-square goodness-of-fit test of counts against probabilities.

    Categories with probability 0 must have no observations (asserted here, it is
    not a statistical question). Categories expected fewer than ``min_expected``
    times are pooled into one, as the chi-square approximation requires.
    """
    from scipy import stats

    observed = np.asarray(observed, dtype=np.float64).ravel()
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    assert observed.shape == p.shape
    assert np.all(p >= 0) and p.sum() > 0
    impossible = p == 0
    assert not observed[impossible].any(), (
        f"categories with probability 0 were drawn: {np.flatnonzero(impossible & (observed > 0))[:10]}"
    )
    n = observed.sum()
    expected = p[~impossible] / p[~impossible].sum() * n
    observed = observed[~impossible]
    small = expected < min_expected
    if small.any():
        expected = np.append(expected[~small], expected[small].sum())
        observed = np.append(observed[~small], observed[small].sum())
    if expected.size < 2:
        return 1.0
    return float(stats.chisquare(observed, expected).pvalue)


@pytest.fixture
def assert_chisquare():
    """``assert_chisquare(draws_or_counts, probabilities, counts=False)``: fit at ALPHA."""

    def check(draws, probabilities, *, counts: bool = False, min_expected: float = 5.0):
        p = np.asarray(probabilities, dtype=np.float64).ravel()
        observed = (np.asarray(draws) if counts else
                    np.bincount(np.asarray(draws).ravel(), minlength=p.size))
        assert observed.size == p.size, "draws outside the categories"
        pvalue = chisquare_pvalue(observed, p, min_expected=min_expected)
        assert pvalue > ALPHA, f"chi-square p-value {pvalue:.3g} <= {ALPHA} (false-alarm rate)"
        return pvalue

    return check


# -- determinism --------------------------------------------------------------------
@pytest.fixture
def assert_thread_invariant():
    """``assert_thread_invariant(fn)``: ``fn(n_threads)`` is identical at 1, 2 and 4 threads."""

    def check(fn):
        results = [fn(t) for t in THREAD_COUNTS]
        for t, result in zip(THREAD_COUNTS[1:], results[1:]):
            if isinstance(result, tuple):
                for a, b in zip(results[0], result):
                    np.testing.assert_array_equal(a, b, err_msg=f"n_threads=1 vs {t}")
            else:
                np.testing.assert_array_equal(results[0], result, err_msg=f"n_threads=1 vs {t}")
        return results[0]

    return check


# -- object state ----------------------------------------------------------------------
def _numpy(x):
    from dlkernels._lib.arrays import to_numpy

    return np.asarray(to_numpy(x))


def state_of(obj) -> dict:
    """Everything observable about a sampler, for before/after comparisons.

    Includes a few draws at a fixed rng, which read the whole internal structure
    (the inner nodes of a tree, the alias table), not only what accessors return.
    """
    from dlkernels.sampling import AliasSampler, NegativeSampler, PrioritizedSampler, SumTree

    if isinstance(obj, PrioritizedSampler):
        draws = obj.sample(300, rng=0, n_threads=1) if obj.tree.total > 0 else None
        return {"tree": state_of(obj.tree), "max_priority": obj.max_priority,
                "alpha": obj.alpha, "beta": obj.beta, "draws": draws}
    if isinstance(obj, SumTree):
        try:
            smallest = obj.min()
        except ValueError:
            smallest = None
        total = obj.total
        return {"capacity": obj.capacity, "len": len(obj), "values": obj.values,
                "total": total, "min": smallest,
                "draws": obj.sample(300, rng=0, n_threads=1) if total > 0 else None,
                "stratified": obj.sample(300, rng=0, stratified=True, n_threads=1) if total > 0 else None}
    if isinstance(obj, (AliasSampler, NegativeSampler)):
        state = {"len": len(obj), "probabilities": _numpy(obj.probabilities),
                 "draws": _numpy(obj.sample(300, rng=0, n_threads=1))}
        if isinstance(obj, NegativeSampler):
            state["power"] = obj.power
        return state
    from dlkernels.neighbors import KDTree

    if isinstance(obj, KDTree):
        # Every flat array of every tree, and a probe query that reads them all.
        probe = np.zeros((1, obj.d), dtype=obj.dtype)
        return {"len": len(obj), "d": obj.d, "dtype": obj.dtype, "leafsize": obj.leafsize,
                "arrays": obj.__getstate__(), "data": np.array(obj.data),
                "probe": obj.query(probe, k=min(len(obj), 8), n_threads=1)}
    raise TypeError(f"no state for {type(obj).__name__}")


@pytest.fixture
def assert_unchanged():
    """``with assert_unchanged(obj): failing_call()``: the object is exactly as before."""
    import contextlib

    @contextlib.contextmanager
    def check(obj):
        before = state_of(obj)
        yield
        np.testing.assert_equal(state_of(obj), before)

    return check


@pytest.fixture
def assert_raises_unchanged(assert_unchanged):
    """``assert_raises_unchanged(obj, call, exc, argname)``: ``call()`` raises ``exc``
    whose message names ``argname``, and ``obj`` is left exactly as it was."""
    import re

    def check(obj, call, exc, argname):
        with assert_unchanged(obj):
            with pytest.raises(exc, match=re.escape(argname)):
                call()

    return check


# -- subprocesses ------------------------------------------------------------------------
@pytest.fixture
def run_python(tmp_path):
    """Run ``python <args>`` in an empty folder (so the checkout is not on sys.path)."""

    def run(*args, env: dict | None = None, timeout: float = 300):
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        full_env.update(env or {})
        return subprocess.run([sys.executable, *args], cwd=tmp_path, env=full_env,
                              capture_output=True, text=True, timeout=timeout)

    return run


# -- threads ---------------------------------------------------------------------------------
def run_concurrently(*loops, seconds: float = 1.0, min_rounds: int = 20) -> list:
    """Run each ``loop(i)`` repeatedly in its own thread, all at once, for ``seconds``.

    Every loop runs at least ``min_rounds`` times. Returns, per loop, the list of
    what its calls returned; the first exception of any thread is re-raised here.
    A thread stuck for 60 s (a deadlock) fails the test.
    """
    import threading
    import time

    stop_at = time.monotonic() + seconds
    results = [[] for _ in loops]
    errors = []
    start = threading.Barrier(len(loops), timeout=60)

    def worker(k):
        try:
            start.wait()
            i = 0
            while i < min_rounds or time.monotonic() < stop_at:
                results[k].append(loops[k](i))
                i += 1
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(len(loops))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60 + seconds)
        assert not t.is_alive(), "a thread did not finish: deadlock?"
    if errors:
        raise errors[0]
    return results


@pytest.fixture
def concurrently():
    """:func:`run_concurrently` as a fixture: stress an object from several threads."""
    return run_concurrently


# -- torch ---------------------------------------------------------------------------------
@pytest.fixture
def one_thread():
    """torch at one intra-op thread for the test: tiny matrices only wait for more."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
