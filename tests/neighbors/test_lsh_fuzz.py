"""Hypothesis: LSHIndex against a brute-force model over random shapes, parameters
and add/remove sequences, and bad input to every method (the error names the
argument and the index is left as it was)."""

import re
import warnings

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from dlkernels.neighbors import LSHIndex, split_csr

from .lsh_support import HASHINGS, brute_distances as distances

metrics = st.sampled_from(["cosine", "l2"])
dtypes = st.sampled_from(["float32", "float64"])


@st.composite
def point_sets(draw, min_rows=1, max_rows=120, dim=None):
    """Points with duplicates, clusters and a wide range of scales (never all-zero rows)."""
    dim = dim or draw(st.integers(1, 12))
    n = draw(st.integers(min_rows, max_rows))
    kind = draw(st.sampled_from(["normal", "integers", "clustered"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "normal":
        X = rng.standard_normal((n, dim)) * draw(st.sampled_from([1e-3, 1.0, 1e3]))
    elif kind == "integers":
        X = rng.integers(-3, 4, (n, dim)).astype(np.float64)   # many exact ties
    else:
        centres = rng.standard_normal((3, dim)) * 5
        X = centres[rng.integers(0, 3, n)] + 0.1 * rng.standard_normal((n, dim))
    zero = ~np.any(X != 0, axis=1)
    X[zero, 0] = 1.0
    return X


def check_against_candidates(index, Q, k, n_probes, model):
    """query() is the exact top k (by distance, then insertion order) of candidates()."""
    dist, found = index.query(Q, k=k, n_probes=n_probes, n_threads=2)
    flat, offsets = index.candidates(Q, n_probes=n_probes, n_threads=2)
    assert dist.shape == found.shape == (len(Q), k)
    order = {i: r for r, i in enumerate(model)}  # insertion order of the live ids
    ids = np.array(list(model), dtype=np.int64)
    dim = index.dim

    def vectors_of(keys):
        return np.array([model[i] for i in keys], dtype=np.float64).reshape(len(keys), dim)

    # Queries are rounded to the index's dtype, as the stored vectors are.
    Q = np.asarray(Q).astype(index.dtype).astype(np.float64)
    for q, pool, d_row, f_row in zip(Q, split_csr(flat, offsets), dist, found):
        assert len(set(pool.tolist())) == len(pool) and set(pool.tolist()) <= set(ids.tolist())
        d = distances(vectors_of(pool.tolist()), q, index.metric)
        kk = min(k, len(pool))
        scale = max(1.0, float(np.abs(d).max(initial=0.0)))
        tol = (3e-5 if index.dtype == np.float32 else 1e-10) * scale
        np.testing.assert_allclose(d_row[:kk], np.sort(d)[:kk], rtol=tol, atol=tol)
        assert np.all(f_row[kk:] == -1) and np.all(np.isinf(d_row[kk:]))
        got = distances(vectors_of(f_row[:kk].tolist()), q, index.metric)
        np.testing.assert_allclose(got, d_row[:kk], rtol=tol, atol=tol)
        # Exact ties are broken by insertion order.
        for a, b, da, db in zip(f_row[:kk - 1], f_row[1:kk], d_row[:kk - 1], d_row[1:kk]):
            if da == db:
                assert order[int(a)] < order[int(b)]


def random_index(dim, metric, data, **kwargs):
    width = data.draw(st.sampled_from(["auto", 0.05, 1.0, 100.0])) if metric == "l2" else "auto"
    return LSHIndex(dim, metric=metric, hashing="random", bucket_width=width, **kwargs)


@given(X=point_sets(), metric=metrics, dtype=dtypes, n_tables=st.integers(1, 5),
       n_probes=st.integers(0, 12), k=st.integers(1, 15), data=st.data())
def test_query_is_exact_top_k_of_candidates(X, metric, dtype, n_tables, n_probes, k, data):
    seed = data.draw(st.integers(0, 99))
    if data.draw(st.booleans()):
        index = random_index(X.shape[1], metric, data, n_tables=n_tables,
                             n_bits=data.draw(st.integers(1, 64)), dtype=dtype, rng=seed)
    else:
        bits = data.draw(st.sampled_from([None, 2, 3, 6]))
        index = LSHIndex(X.shape[1], metric=metric, n_tables=n_tables, n_bits=bits, dtype=dtype,
                         rng=seed)
    index.add(X)
    stored = index.vectors.astype(np.float64)
    model = {i: stored[i] for i in range(len(X))}
    Q = np.concatenate([X[: data.draw(st.integers(0, 5))],
                        X[:3] + data.draw(st.floats(-1, 1)), np.ones((1, X.shape[1]))])
    if metric == "cosine":  # a shifted row can land on zero, which the cosine distance refuses
        Q[~np.any(Q.astype(dtype) != 0, axis=1), 0] = 1.0
    check_against_candidates(index, Q, k, n_probes, model)


@settings(max_examples=25)
@given(X=point_sets(min_rows=30, max_rows=150), metric=metrics, data=st.data())
def test_add_remove_sequences_follow_a_model(X, metric, data, tmp_path_factory):
    if data.draw(st.booleans()):
        index = random_index(X.shape[1], metric, data, n_tables=3,
                             n_bits=data.draw(st.integers(1, 8)), rng=0)
    else:
        index = LSHIndex(X.shape[1], metric=metric, n_tables=data.draw(st.integers(1, 3)), rng=0)
    model: dict[int, np.ndarray] = {}   # id -> vector, in insertion order
    next_id, pos = 0, 0
    for _ in range(data.draw(st.integers(1, 8))):
        op = data.draw(st.sampled_from(["add", "remove", "tune", "save"]))
        if op == "tune" and model:
            # Tuning changes the query defaults only; they stay within tune's grid.
            Q = np.stack(list(model.values())[:6]) + 0.01
            target = data.draw(st.floats(0.1, 1.0))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)   # target out of reach
                result = index.tune(Q, k=data.draw(st.integers(1, 5)), target_recall=target,
                                    n_threads=data.draw(st.integers(1, 2)))
            assert index.n_probes == result["n_probes"] >= 0
            assert index.max_candidates == result["max_candidates"]
            assert 0.0 <= result["recall"] <= 1.0
        elif op == "save":
            path = tmp_path_factory.mktemp("lsh") / "index.npz"
            index.save(path)
            loaded = LSHIndex.load(path)
            np.testing.assert_array_equal(loaded.ids, index.ids)
            if model:
                Q = np.stack(list(model.values())[:5])
                np.testing.assert_equal(loaded.query(Q, k=3, n_threads=1),
                                        index.query(Q, k=3, n_threads=1))
            index = loaded
        elif op == "remove" and model:
            live = list(model)
            gone = data.draw(st.lists(st.sampled_from(live), unique=True, max_size=len(live)))
            index.remove(gone)
            for i in gone:
                del model[i]
        elif op == "add" and pos < len(X):
            b = data.draw(st.integers(1, max(1, len(X) - pos)))
            batch = X[pos:pos + b]
            pos += len(batch)
            if data.draw(st.booleans()):
                ids = np.arange(next_id, next_id + len(batch))
                index.add(batch)
            else:
                start = data.draw(st.integers(next_id, next_id + 1000))
                ids = np.arange(start, start + len(batch))
                index.add(batch, ids=ids)
            next_id = int(ids.max()) + 1
            stored = batch.astype(index.dtype).astype(np.float64)
            model.update(zip(ids.tolist(), stored))
        assert len(index) == len(model)
        np.testing.assert_array_equal(index.ids, np.array(list(model), dtype=np.int64))
        if model:
            Q = np.stack([model[i] for i in list(model)[:4]])
            check_against_candidates(index, Q, data.draw(st.integers(1, 8)), 2, model)
            _, found = index.query(Q, k=1, n_probes=0)
            # A stored vector is in its own buckets; distance 0 to itself (ties allowed).
            d = [distances(model[int(f)][None], q, metric)[0] for f, q in zip(found[:, 0], Q)]
            np.testing.assert_allclose(d, 0.0, atol=1e-5)


def state(index):
    if len(index) == 0:
        return {"len": 0}
    Q = index.vectors[:5]
    return {"len": len(index), "ids": index.ids, "vectors": index.vectors,
            "q": index.query(Q, k=3, n_probes=1, n_threads=1), "hash": index.hash(Q)}


def corrupt_points(draw, X):
    X = np.array(X, dtype=np.float64, copy=True)
    kind = draw(st.sampled_from(["nan", "inf", "-inf", "huge", "object", "str", "complex",
                                 "dim", "1d", "3d"]))
    if kind in ("nan", "inf", "-inf", "huge"):
        X[draw(st.integers(0, len(X) - 1)), draw(st.integers(0, X.shape[1] - 1))] = {
            "nan": np.nan, "inf": np.inf, "-inf": -np.inf, "huge": 1e300}[kind]
        return X, ValueError
    if kind == "dim":
        return np.ones((len(X), X.shape[1] + draw(st.integers(1, 3)))), ValueError
    if kind == "1d":
        return X[0], ValueError
    if kind == "3d":
        return X[None], ValueError
    return {"object": X.astype(object), "str": X.astype(str), "complex": X + 1j}[kind], TypeError


@given(X=point_sets(min_rows=5, max_rows=60), metric=metrics, data=st.data())
def test_bad_input_changes_nothing(X, metric, data):
    index = LSHIndex(X.shape[1], metric=metric, hashing=data.draw(st.sampled_from(HASHINGS)),
                     n_tables=2, n_bits=4, dtype="float32", rng=1)
    index.add(X)
    before = state(index)
    bad, exc = corrupt_points(data.draw, X[:3])
    which = data.draw(st.sampled_from(["add", "query", "candidates", "hash", "ids", "remove",
                                       "k", "n_probes"]))
    name = {"add": "X", "query": "X", "candidates": "X", "hash": "X", "ids": "ids",
            "remove": "ids", "k": "k", "n_probes": "n_probes"}[which]
    if which == "add":
        call = lambda: index.add(bad)  # noqa: E731
    elif which == "query":
        call = lambda: index.query(bad)  # noqa: E731
    elif which == "candidates":
        call = lambda: index.candidates(bad)  # noqa: E731
    elif which == "hash":
        call = lambda: index.hash(bad)  # noqa: E731
    elif which == "ids":
        ids = data.draw(st.sampled_from([[0, 1, 2], [-5, 1000, 1001], [1000, 1000, 1001],
                                         [1.5, 2.5, 3.5], [1000, 1001]]))
        exc = TypeError if isinstance(ids[0], float) else ValueError
        call = lambda: index.add(X[:3], ids=ids)  # noqa: E731
    elif which == "remove":
        ids = data.draw(st.sampled_from([[len(X) + 7], [0, 0], [-1], [0, len(X)]]))
        exc = ValueError
        call = lambda: index.remove(ids)  # noqa: E731
    elif which == "k":
        k = data.draw(st.sampled_from([0, -3, 1.5, "2", None]))
        exc = TypeError if not isinstance(k, int) else ValueError
        call = lambda: index.query(X[:2], k=k)  # noqa: E731
    else:
        p = data.draw(st.sampled_from([-1, 2.0, "1"]))
        exc = ValueError if isinstance(p, int) else TypeError
        call = lambda: index.query(X[:2], n_probes=p)  # noqa: E731
    with pytest.raises(exc, match=re.escape(name)):
        call()
    np.testing.assert_equal(state(index), before)


@given(dim=st.integers(1, 40), metric=metrics, n_tables=st.integers(1, 6),
       n_bits=st.integers(1, 64), X=hnp.arrays(np.float64, st.tuples(st.integers(0, 30),
                                                                      st.just(3)),
                                               elements=st.floats(-1e6, 1e6)),
       seed=st.integers(0, 2**32 - 1))
def test_hash_numpy_torch_threads(dim, metric, n_tables, n_bits, X, seed, assert_thread_invariant):
    torch = pytest.importorskip("torch")
    assume(dim >= 3)
    X = np.pad(X, ((0, 0), (0, dim - 3)))
    index = LSHIndex(dim, metric=metric, hashing="random", n_tables=n_tables, n_bits=n_bits,
                     bucket_width=0.37 if metric == "l2" else "auto", rng=seed)
    codes = assert_thread_invariant(lambda t: index.hash(X, n_threads=t))
    assert codes.shape == (len(X), n_tables) and codes.dtype == np.uint64
    if metric == "cosine" and n_bits < 64:
        assert np.all(codes < np.uint64(1) << np.uint64(n_bits))
    np.testing.assert_array_equal(index.hash(torch.from_numpy(X)).numpy().view(np.uint64), codes)


@settings(max_examples=30)
@given(X=point_sets(min_rows=1, max_rows=200), metric=metrics, n_tables=st.integers(1, 3),
       n_bits=st.sampled_from([None, 2, 5]), seed=st.integers(0, 2**32 - 1))
def test_tree_fit_on_any_data(X, metric, n_tables, n_bits, seed, assert_thread_invariant):
    # Duplicates, one point, ties, scales from 1e-3 to 1e3: the fitted trees
    # still put every vector in its own leaf's bucket, at any thread count.
    index = LSHIndex(X.shape[1], metric=metric, n_tables=n_tables, n_bits=n_bits, rng=seed)
    index.add(X)
    fam = index._family
    assert np.isfinite(fam.fine).all() and np.isfinite(fam.coarse).all()
    codes = assert_thread_invariant(lambda t: index.hash(X, n_threads=t))
    assert codes.max() < 2 ** index.n_bits
    # Each vector finds itself, or a copy, at distance 0 in its home buckets.
    dist, found = index.query(X, k=1, n_probes=0)
    assert np.all(found[:, 0] >= 0)
    stored = index.vectors.astype(np.float64)
    d = [distances(stored[f][None], q, metric)[0] for f, q in zip(found[:, 0], stored)]
    np.testing.assert_allclose(d, 0.0, atol=1e-5)
