"""LSHIndex pickles and files: round trips of both families, format 1 files (written
before the k-means trees) still read, and invalid contents refused."""

import pickle

import numpy as np
import pytest

from dlkernels import FileFormatError
from dlkernels._lib.persist import save_arrays
from dlkernels.neighbors import LSHIndex

from .lsh_support import clustered, family, state


def build(rng, metric, hashing):
    index = LSHIndex(6, **family(hashing, metric), dtype="float64", rng=27)
    X = clustered(rng, 400, 6)
    index.add(X[:300])
    index.add(X[300:], ids=np.arange(1000, 1100))
    index.remove([5, 1050])
    index.n_probes, index.max_candidates = 7, 120
    return index, X


def test_pickle_round_trip(rng, metric, hashing):
    index, X = build(rng, metric, hashing)
    clone = pickle.loads(pickle.dumps(index))
    np.testing.assert_equal(state(clone), state(index))
    np.testing.assert_equal(clone.query(X, k=5), index.query(X, k=5))
    clone.add(X[:2])
    index.add(X[:2])
    np.testing.assert_array_equal(clone.ids, index.ids)  # next_id survives


def test_save_load(rng, metric, hashing, tmp_path):
    index, X = build(rng, metric, hashing)
    index.save(tmp_path / "lsh.npz")
    loaded = LSHIndex.load(tmp_path / "lsh.npz")
    np.testing.assert_equal(state(loaded), state(index))
    assert (loaded.hashing, loaded.n_bits, loaded.bucket_width, loaded.dtype) == \
        (index.hashing, index.n_bits, index.bucket_width, index.dtype)
    np.testing.assert_equal(loaded.query(X, k=5), index.query(X, k=5))


@pytest.mark.parametrize("kwargs", [{"metric": "l2", "hashing": "random"}, {"n_bits": 6}, {}])
def test_save_load_before_the_first_add(tmp_path, kwargs):
    index = LSHIndex(4, rng=28, **kwargs)
    index.save(tmp_path / "e.npz")
    loaded = LSHIndex.load(tmp_path / "e.npz")
    assert len(loaded) == 0 and loaded.n_bits == index.n_bits
    assert loaded.bucket_width == index.bucket_width
    X = np.random.default_rng(0).standard_normal((300, 4))
    index.add(X)
    loaded.add(X)      # the same seed: the same fit
    np.testing.assert_array_equal(loaded.hash(X), index.hash(X))


def test_reads_format_1(rng, metric, tmp_path):
    # The members and dtypes format 1 had (random hash functions only, no query
    # settings): such a file loads as a random-family index with the same buckets.
    index = LSHIndex(6, metric=metric, hashing="random", n_tables=3, n_bits=5, rng=29)
    X = clustered(rng, 300, 6)
    index.add(X)
    fam = index._family
    save_arrays(tmp_path / "v1.npz", "LSHIndex", version=1, dim=6, metric=metric, n_tables=3,
                n_bits=5, bucket_width=np.nan if fam.width is None else fam.width,
                dtype="float32", planes=fam.planes, shifts=fam.shifts, mult=fam.mult,
                vectors=index.vectors, ids=index.ids, next_id=300)
    loaded = LSHIndex.load(tmp_path / "v1.npz")
    assert loaded.hashing == "random" and loaded.n_probes == 256
    np.testing.assert_array_equal(loaded.hash(X), index.hash(X))
    np.testing.assert_equal(loaded.query(X[:20], k=4, n_probes=9),
                            index.query(X[:20], k=4, n_probes=9))


def _corrupt(state, key, value):
    bad = dict(state, **{key: value})
    if key == "ids":
        bad["vectors"] = np.ones((2, 6))
    return bad


@pytest.mark.parametrize("key, value", [
    ("n_bits", 99), ("planes", np.ones((2, 2))), ("vectors", np.full((2, 6), np.nan)),
    ("ids", np.array([1, 1])), ("bucket_width", -1.0), ("bucket_width", 1e-320),
    ("metric", "hamming"), ("hashing", "lattice"), ("n_probes", -3), ("max_candidates", -1),
    ("planes", "nan"), ("shifts", "inf"), ("mult", "even"),
])
def test_refuses_invalid_random_files(rng, tmp_path, key, value):
    from dlkernels.neighbors._lsh_persist import state_of

    index, _ = build(rng, "l2", "random")
    good = state_of(index)
    if isinstance(value, str) and key in ("planes", "shifts", "mult"):
        arr = good[key].copy()
        arr.flat[3] = {"nan": np.nan, "inf": np.inf}.get(value, 0)
        if value == "even":
            arr.flat[3] = np.uint64(2)
        value = arr
    save_arrays(tmp_path / "bad.npz", "LSHIndex", version=2, **_corrupt(good, key, value))
    with pytest.raises(FileFormatError, match="bad.npz"):
        LSHIndex.load(tmp_path / "bad.npz")


@pytest.mark.parametrize("change", [
    "nan centre", "huge centre", "offsets out of order", "empty cell", "offsets short",
    "rotation not unit", "rotation nan", "n_bits disagrees", "missing fine", "extra member",
    "negative fit size", "seed too large", "coarse too wide",
])
def test_refuses_invalid_tree_files(rng, tmp_path, change):
    from dlkernels.neighbors._lsh_persist import state_of

    index, _ = build(rng, "cosine", "kmeans")
    bad = dict(state_of(index))
    if change == "nan centre":
        bad["fine"] = bad["fine"].copy()
        bad["fine"][0, 1, 0] = np.nan
    elif change == "huge centre":
        bad["coarse"] = bad["coarse"].copy()
        bad["coarse"][0, 0, 0] = 3e38
    elif change == "offsets out of order":
        bad["offsets"] = bad["offsets"][:, ::-1].copy()
    elif change == "empty cell":
        bad["offsets"] = bad["offsets"].copy()
        bad["offsets"][0, 1] = 0
    elif change == "offsets short":
        bad["offsets"] = bad["offsets"][:, :-1].copy()
    elif change == "rotation not unit":
        bad["rotation"] = bad["rotation"] * 3
    elif change == "rotation nan":
        bad["rotation"] = bad["rotation"].copy()
        bad["rotation"][0, 0] = np.nan
    elif change == "n_bits disagrees":
        bad["n_bits"] = 9
    elif change == "missing fine":
        del bad["fine"]
    elif change == "extra member":
        bad["planes"] = np.ones((2, 6))
    elif change == "negative fit size":
        bad["fit_size"] = -1
    elif change == "seed too large":
        bad["seed"] = np.uint64(2**64 - 1)
    else:
        bad["coarse"] = np.concatenate([bad["coarse"], bad["coarse"]], axis=1)
    save_arrays(tmp_path / "bad.npz", "LSHIndex", version=2, **bad)
    with pytest.raises(FileFormatError, match="bad.npz"):
        LSHIndex.load(tmp_path / "bad.npz")


def test_refuses_other_kinds_and_newer_versions(rng, tmp_path):
    save_arrays(tmp_path / "other.npz", "AliasSampler", probabilities=np.ones(2))
    with pytest.raises(FileFormatError, match="AliasSampler"):
        LSHIndex.load(tmp_path / "other.npz")
    index, _ = build(rng, "l2", "kmeans")
    from dlkernels.neighbors._lsh_persist import state_of

    save_arrays(tmp_path / "v3.npz", "LSHIndex", version=3, **state_of(index))
    with pytest.raises(FileFormatError, match="newer"):
        LSHIndex.load(tmp_path / "v3.npz")
