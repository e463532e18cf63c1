"""Every benchmark case, implemented by dlkernels and by its peers, behind one interface.

``make(case, impl, n_threads)`` does all the set-up (data, filled buffers, built
tables) and returns a callable with no arguments that does only the timed work.
The asv suite (``sampling.py``) and ``bench/compare.py`` both time these
callables, so the two always measure the same thing.

Skipping follows asv's convention, ``NotImplementedError`` from set-up:

* the peer's package is not installed;
* the implementation has no thread count and ``n_threads`` is not 1 (cpprb,
  numpy, and the dlkernels calls that take no ``n_threads``), so a peer appears
  once per table, at ``n_threads=1``, instead of being timed twice for nothing.
"""

from __future__ import annotations

import functools
import importlib
import itertools

import numpy as np

# Sizes from the design spec.
PER_CAPACITY = 2**20        # stored transitions
PER_BATCH = 1024            # indices drawn / priorities updated per call
PER_UPDATE_POOL = 256       # distinct update batches cycled through
ALPHA, BETA = 0.6, 0.4
ALIAS_CATEGORIES = 10**6
ALIAS_DRAWS = 10**7
VOCAB = 10**5               # Zipf vocabulary for negative sampling
NEG_ROWS, NEG_PER_ROW = 1024, 5
PAIRS, PAIRS_RATIO = 10**5, 5

N_THREADS = [1, 2]

# case -> {impl: (builder, threaded)}; a threaded builder takes n_threads.
CASES: dict[str, dict[str, tuple]] = {}


def implementations(case: str) -> list[str]:
    """The implementations of ``case``, dlkernels first (the asv ``impl`` axis)."""
    return list(CASES[case])


def not_applicable(case: str) -> list[tuple[str, int]]:
    """The (impl, n_threads) pairs of ``case`` that ``make`` refuses for want of a thread count."""
    return [(impl, n) for impl, (_, threaded) in CASES[case].items() if not threaded
            for n in N_THREADS if n != 1]


def make(case: str, impl: str, n_threads: int):
    """Set up ``impl`` of ``case``; return the zero-argument callable to time."""
    builder, threaded = CASES[case][impl]
    if not threaded and n_threads != 1:
        raise NotImplementedError(f"{impl} has no thread count: timed at n_threads=1 only")
    return builder(n_threads) if threaded else builder()


def _register(case: str, impl: str, threaded: bool = False):
    def decorate(builder):
        CASES.setdefault(case, {})[impl] = (builder, threaded)
        return builder
    return decorate


def _require(module: str):
    """Import an optional peer, or skip the benchmark if it is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise NotImplementedError(f"{module} is not installed") from None


# -- data (fixed seeds; cached so compare.py builds each array once) ------------------

@functools.lru_cache(maxsize=None)
def _priorities() -> np.ndarray:
    # |TD error|-like priorities, bounded away from 0.
    return np.abs(np.random.default_rng(0).standard_normal(PER_CAPACITY)) + 1e-3


@functools.lru_cache(maxsize=None)
def _per_update_batches() -> list[tuple[np.ndarray, np.ndarray]]:
    # A pool of fresh (indices, priorities) batches: a replay buffer rewrites the
    # priorities of the batch it just drew, a different one each step.
    rng = np.random.default_rng(1)
    return [(rng.integers(0, PER_CAPACITY, PER_BATCH),
             np.abs(rng.standard_normal(PER_BATCH)) + 1e-3) for _ in range(PER_UPDATE_POOL)]


def _cycling(write):
    """A zero-argument call that writes the next batch of the pool on each call."""
    batches = itertools.cycle(_per_update_batches())
    return lambda: write(*next(batches))


@functools.lru_cache(maxsize=None)
def _alias_weights() -> np.ndarray:
    return np.random.default_rng(2).random(ALIAS_CATEGORIES)


@functools.lru_cache(maxsize=None)
def _zipf_counts() -> np.ndarray:
    # Word counts of a Zipf (s = 1) vocabulary: count(rank r) ~ 1/r.
    return np.floor(1e8 / np.arange(1, VOCAB + 1))


@functools.lru_cache(maxsize=None)
def _positives(n: int) -> np.ndarray:
    # Positive ids drawn from the unigram distribution, as in a real corpus:
    # frequent words are often positives, so exclusions do bite.
    counts = _zipf_counts()
    return np.random.default_rng(3).choice(VOCAB, size=n, p=counts / counts.sum())


# -- prioritized replay --------------------------------------------------------------

def _dlkernels_per():
    from dlkernels.sampling import PrioritizedSampler

    per = PrioritizedSampler(PER_CAPACITY, alpha=ALPHA, beta=BETA)
    per.update(np.arange(PER_CAPACITY), _priorities())
    return per


def _cpprb_per():
    cpprb = _require("cpprb")
    buffer = cpprb.PrioritizedReplayBuffer(PER_CAPACITY, {"obs": {}}, alpha=ALPHA)
    buffer.add(obs=np.zeros(PER_CAPACITY), priorities=_priorities())
    return buffer


@_register("per_sample", "dlkernels", threaded=True)
def _per_sample_dlkernels(n_threads):
    per, rng = _dlkernels_per(), np.random.default_rng(4)
    return lambda: per.sample(PER_BATCH, rng=rng, n_threads=n_threads)


@_register("per_sample", "cpprb")
def _per_sample_cpprb():
    # cpprb also gathers the (1-float) "obs" column of the batch: it has no
    # indices-only sampling call.
    buffer = _cpprb_per()
    return lambda: buffer.sample(PER_BATCH, beta=BETA)


@_register("per_update", "dlkernels")
def _per_update_dlkernels():
    return _cycling(_dlkernels_per().update)


@_register("per_update", "cpprb")
def _per_update_cpprb():
    return _cycling(_cpprb_per().update_priorities)


# The same batch over and over: every line it touches stays cached, a best case
# that no replay loop sees, kept to show what the cache does to both trees.
@_register("per_update_same_batch", "dlkernels")
def _per_update_same_dlkernels():
    per, (idx, prio) = _dlkernels_per(), _per_update_batches()[0]
    return lambda: per.update(idx, prio)


@_register("per_update_same_batch", "cpprb")
def _per_update_same_cpprb():
    buffer, (idx, prio) = _cpprb_per(), _per_update_batches()[0]
    return lambda: buffer.update_priorities(idx, prio)


# One replay step: draw a batch, then give its slots new priorities.
@_register("per_step", "dlkernels", threaded=True)
def _per_step_dlkernels(n_threads):
    per, rng = _dlkernels_per(), np.random.default_rng(4)
    priorities = itertools.cycle(p for _, p in _per_update_batches())

    def step():
        idx, _ = per.sample(PER_BATCH, rng=rng, n_threads=n_threads)
        per.update(idx, next(priorities))
    return step


@_register("per_step", "cpprb")
def _per_step_cpprb():
    buffer = _cpprb_per()
    priorities = itertools.cycle(p for _, p in _per_update_batches())

    def step():
        batch = buffer.sample(PER_BATCH, beta=BETA)
        buffer.update_priorities(batch["indexes"], next(priorities))
    return step


# -- sum tree (the peer is an inverse-CDF lookup on a precomputed cumsum) ---------------

@_register("sumtree_build", "dlkernels")
def _sumtree_build_dlkernels():
    from dlkernels.sampling import SumTree

    weights = _priorities()
    return lambda: SumTree.from_weights(weights)


@_register("sumtree_build", "numpy")
def _sumtree_build_numpy():
    weights = _priorities()
    return lambda: np.cumsum(weights)


@_register("sumtree_sample", "dlkernels", threaded=True)
def _sumtree_sample_dlkernels(n_threads):
    from dlkernels.sampling import SumTree

    tree, rng = SumTree.from_weights(_priorities()), np.random.default_rng(5)
    return lambda: tree.sample(PER_BATCH, rng=rng, n_threads=n_threads)


@_register("sumtree_sample", "numpy")
def _sumtree_sample_numpy():
    cdf, rng = np.cumsum(_priorities()), np.random.default_rng(5)
    return lambda: np.searchsorted(cdf, rng.random(PER_BATCH) * cdf[-1], side="right")


def _prefix_sums(total: float) -> np.ndarray:
    return np.random.default_rng(6).random(PER_BATCH) * total


@_register("sumtree_find", "dlkernels", threaded=True)
def _sumtree_find_dlkernels(n_threads):
    from dlkernels.sampling import SumTree

    tree = SumTree.from_weights(_priorities())
    prefix = _prefix_sums(tree.total)
    return lambda: tree.find(prefix, n_threads=n_threads)


@_register("sumtree_find", "numpy")
def _sumtree_find_numpy():
    cdf = np.cumsum(_priorities())
    prefix = _prefix_sums(cdf[-1])
    return lambda: np.searchsorted(cdf, prefix, side="right")


# -- alias method --------------------------------------------------------------------

@_register("alias_build", "dlkernels")
def _alias_build_dlkernels():
    from dlkernels.sampling import AliasSampler

    weights = _alias_weights()
    return lambda: AliasSampler(weights)


@_register("alias_build", "numpy")
def _alias_build_numpy():
    # What Generator.choice(p=...) builds on every call: the normalised CDF.
    weights = _alias_weights()
    return lambda: np.cumsum(weights / weights.sum())


@_register("alias_sample", "dlkernels", threaded=True)
def _alias_sample_dlkernels(n_threads):
    from dlkernels.sampling import AliasSampler

    sampler, rng = AliasSampler(_alias_weights()), np.random.default_rng(7)
    return lambda: sampler.sample(ALIAS_DRAWS, rng=rng, n_threads=n_threads)


@_register("alias_sample", "torch", threaded=True)
def _alias_sample_torch(n_threads):
    torch = _require("torch")
    # float32, torch's default dtype, is also its faster path here.
    weights = torch.from_numpy(_alias_weights()).float()
    generator = torch.Generator().manual_seed(7)

    def draw():
        # Set on every call: torch's thread count is global to the process.
        torch.set_num_threads(n_threads)
        return torch.multinomial(weights, ALIAS_DRAWS, replacement=True, generator=generator)
    return draw


@_register("alias_sample", "numpy")
def _alias_sample_numpy():
    weights = _alias_weights()
    p, rng = weights / weights.sum(), np.random.default_rng(7)
    return lambda: rng.choice(ALIAS_CATEGORIES, size=ALIAS_DRAWS, p=p)


@_register("alias_sample", "numpy-integers")
def _alias_sample_numpy_integers():
    # Uniform draws: the memory-bound floor any weighted sampler is measured against.
    rng = np.random.default_rng(7)
    return lambda: rng.integers(0, ALIAS_CATEGORIES, ALIAS_DRAWS)


# -- negative sampling ---------------------------------------------------------------

def _noise() -> np.ndarray:
    noise = _zipf_counts() ** 0.75
    return noise / noise.sum()


def numpy_negatives(rng, p: np.ndarray, exclude: np.ndarray, k: int) -> np.ndarray:
    """``k`` draws from ``p`` per row, none equal to that row's ``exclude`` id.

    Redrawing the collisions until none is left samples exactly from ``p``
    conditioned on avoiding the excluded id, as dlkernels does.
    """
    out = rng.choice(len(p), size=(len(exclude), k), p=p)
    hit = out == exclude[:, None]
    while hit.any():
        out[hit] = rng.choice(len(p), size=int(hit.sum()), p=p)
        hit = out == exclude[:, None]
    return out


@_register("negative_sample", "dlkernels", threaded=True)
def _negative_sample_dlkernels(n_threads):
    from dlkernels.sampling import NegativeSampler

    sampler, rng = NegativeSampler(_zipf_counts(), power=0.75), np.random.default_rng(8)
    positives = _positives(NEG_ROWS)
    return lambda: sampler.sample((NEG_ROWS, NEG_PER_ROW), rng=rng, exclude=positives,
                                  n_threads=n_threads)


@_register("negative_sample", "numpy")
def _negative_sample_numpy():
    p, rng, positives = _noise(), np.random.default_rng(8), _positives(NEG_ROWS)
    return lambda: numpy_negatives(rng, p, positives, NEG_PER_ROW)


def _positive_pairs() -> np.ndarray:
    # (input, target) pairs; the targets are unigram draws like the positives above.
    inputs = np.random.default_rng(9).integers(0, VOCAB, PAIRS)
    return np.column_stack([inputs, _positives(PAIRS)])


@_register("negative_pairs", "dlkernels", threaded=True)
def _negative_pairs_dlkernels(n_threads):
    from dlkernels.sampling import NegativeSampler

    sampler, rng = NegativeSampler(_zipf_counts(), power=0.75), np.random.default_rng(10)
    pairs = _positive_pairs()
    return lambda: sampler.pairs(pairs, ratio=PAIRS_RATIO, rng=rng, n_threads=n_threads)


@_register("negative_pairs", "numpy")
def _negative_pairs_numpy():
    p, rng, pairs = _noise(), np.random.default_rng(10), _positive_pairs()

    def pairs_numpy():
        # Same output as NegativeSampler.pairs: each positive, then its negatives.
        inputs, targets = pairs[:, 0], pairs[:, 1]
        negatives = numpy_negatives(rng, p, targets, PAIRS_RATIO)
        candidates = np.concatenate([targets[:, None], negatives], axis=1).ravel()
        labels = np.zeros((len(pairs), 1 + PAIRS_RATIO), dtype=np.float32)
        labels[:, 0] = 1.0
        return np.repeat(inputs, 1 + PAIRS_RATIO), candidates, labels.ravel()
    return pairs_numpy


# -- debug: MemoryProfiler overhead on a training step -------------------------------------
# The "peer" is the same step without the profiler, so peer time / dlkernels time is
# 1 / (1 + overhead): 0.91 means a 10% overhead. One fresh profiler per step (a
# profiler is used once), so the set-up and tear-down of its hooks are timed too.

@functools.lru_cache(maxsize=None)
def _debug_model(kind: str):
    torch = _require("torch")
    torch.manual_seed(0)
    nn = torch.nn
    if kind == "mlp":   # MNIST-sized MLP
        model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                              nn.Linear(512, 10))
        x = torch.randn(128, 784)
    else:               # CIFAR-sized CNN
        model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Flatten(), nn.Linear(32 * 8 * 8, 10))
        x = torch.randn(64, 3, 32, 32)
    y = torch.randint(0, 10, (x.shape[0],))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    return model, opt, x, y


def _debug_step(kind: str, n_threads: int, profiled: bool):
    torch = _require("torch")
    from torch.nn.functional import cross_entropy

    model, opt, x, y = _debug_model(kind)
    MemoryProfiler = None
    if profiled:
        from dlkernels.debug import MemoryProfiler

    def step():
        opt.zero_grad()
        cross_entropy(model(x), y).backward()
        opt.step()

    def run():
        torch.set_num_threads(n_threads)  # torch's thread count is global to the process
        if MemoryProfiler is None:
            step()
        else:
            with MemoryProfiler(model, opt):
                step()
    run()  # Adam's state exists from here on, as in a running training loop
    return run


for _kind in ("mlp", "cnn"):
    _register(f"profile_{_kind}_step", "dlkernels", threaded=True)(
        functools.partial(_debug_step, _kind, profiled=True))
    _register(f"profile_{_kind}_step", "no-profiler", threaded=True)(
        functools.partial(_debug_step, _kind, profiled=False))
# The torch layer's cases live in their own module and register here.
from . import _nn_peers  # noqa: E402,F401
# -- LSHIndex (data and searchers in _lsh_data.py) ---------------------------------------------

def _lsh_case(impl):
    def builder(n_threads):
        from . import _lsh_data

        searcher = _lsh_data.tuned(impl, "clustered", n_threads)
        queries = _lsh_data.data("clustered")[2]
        return lambda: searcher.search(queries)
    return builder


# Each tuned for recall@10 >= 0.95 on the tuning queries (bench/lsh_curve.py
# measures the recall on the test queries timed here).
for _impl in ("dlkernels", "hnswlib", "faiss-ivf"):
    _register("lsh_query", _impl, threaded=True)(_lsh_case(_impl))
# dlkernels.compress's cases live in their own module and register here.
from . import _compress_peers  # noqa: E402,F401
# dlkernels.cluster's cases live in their own module and register here.
from . import _cluster_peers  # noqa: E402,F401
