"""Hypothesis: random graphs against a dict model, random walks on them, bad inputs."""

import re

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, strategies as st

from dlkernels.graph import Graph, random_walks


@st.composite
def edge_lists(draw, max_nodes=30, max_edges=120):
    n = draw(st.integers(1, max_nodes))
    m = draw(st.integers(0, max_edges))
    src = draw(hnp.arrays(np.int64, m, elements=st.integers(0, n - 1)))
    dst = draw(hnp.arrays(np.int64, m, elements=st.integers(0, n - 1)))
    weights = None
    if draw(st.booleans()):
        weights = draw(hnp.arrays(np.float64, m, elements=st.one_of(
            st.just(0.0), st.floats(1e-6, 1e6, allow_nan=False, allow_infinity=False))))
    return n, src, dst, weights


def model(n, src, dst, weights, directed, self_loops):
    edges = {}
    for i, (a, b) in enumerate(zip(src.tolist(), dst.tolist())):
        w = 1.0 if weights is None else float(weights[i])
        if (a == b and not self_loops) or w == 0:
            continue
        pairs = [(a, b)] if directed or a == b else [(a, b), (b, a)]
        for key in pairs:
            edges[key] = edges.get(key, 0.0) + w
    if weights is None:
        edges = {key: 1.0 for key in edges}
    return edges


def assert_raises_named(exc, name, call):
    with pytest.raises(exc, match=re.escape(name)):
        call()


@given(data=edge_lists(), directed=st.booleans(), self_loops=st.booleans())
def test_graph_follows_a_dict_model(data, directed, self_loops):
    n, src, dst, weights = data
    g = Graph.from_edges(src, dst, weights, directed=directed, self_loops=self_loops, n_nodes=n)
    want = model(n, src, dst, weights, directed, self_loops)
    got = {(v, int(x)): w for v in range(n)
           for x, w in zip(g.neighbors(v), g.edge_weights(v).tolist())}
    assert got.keys() == want.keys()
    for key, w in want.items():
        assert got[key] == pytest.approx(w, rel=1e-12)
    assert g.indptr[-1] == g.indices.size == len(want)


@given(data=edge_lists(), directed=st.booleans(), length=st.integers(1, 12),
       per_node=st.integers(0, 3), p=st.sampled_from([0.1, 0.5, 1.0, 2.0, 30.0]),
       q=st.sampled_from([0.1, 0.5, 1.0, 2.0, 30.0]), seed=st.integers(0, 2**64 - 1))
def test_walks_are_valid_and_thread_invariant(assert_thread_invariant, data, directed, length,
                                              per_node, p, q, seed):
    n, src, dst, weights = data
    g = Graph.from_edges(src, dst, weights, directed=directed, self_loops=True, n_nodes=n)
    walks = assert_thread_invariant(
        lambda t: random_walks(g, length, per_node, p=p, q=q, rng=seed, n_threads=t))
    assert walks.shape == (n * per_node, length) and walks.dtype == np.int32
    edges = {(v, int(x)) for v in range(n) for x in g.neighbors(v)}
    deg = g.degree()
    for walk in walks:
        alive = walk[walk >= 0]
        assert (walk[alive.size:] == -1).all()
        assert all((a, b) in edges for a, b in zip(alive[:-1].tolist(), alive[1:].tolist()))
        assert alive.size == length or deg[alive[-1]] == 0


@given(data=edge_lists(), kind=st.sampled_from(["src", "dst", "weights", "n_nodes"]),
       value=st.sampled_from(["negative", "nan", "float", "string", "length"]))
def test_bad_edges_named(data, kind, value):
    n, src, dst, weights = data
    src, dst = np.append(src, 0), np.append(dst, 0)
    weights = np.ones(src.size) if weights is None else np.append(weights, 1.0)
    args = {"src": src, "dst": dst, "weights": weights, "n_nodes": n}
    if kind == "n_nodes":
        bad, exc = {"negative": (-1, ValueError), "nan": (np.nan, TypeError),
                    "float": (2.0, TypeError), "string": ("3", TypeError),
                    "length": (0, ValueError)}[value]
        args["n_nodes"] = bad
    else:
        arr = args[kind].astype(np.float64 if kind == "weights" else np.int64)
        if value == "negative":
            arr[-1], exc = -1, ValueError
        elif value == "nan":
            arr = arr.astype(np.float64)
            arr[-1] = np.nan
            exc = ValueError if kind == "weights" else TypeError
        elif value == "float":
            arr = arr + 0.5
            exc = TypeError if kind != "weights" else None
        elif value == "string":
            arr, exc = arr.astype(str), TypeError
        else:
            arr, exc = arr[:-1], ValueError
        if exc is None:
            return  # a fractional weight is fine
        args[kind] = arr
    name = "n_nodes" if kind == "n_nodes" else kind
    if kind in ("src", "dst") and value == "length":
        name = "src and dst"
    assert_raises_named(exc, name, lambda: Graph.from_edges(
        args["src"], args["dst"], args["weights"], n_nodes=args["n_nodes"]))


@given(data=edge_lists(), p=st.floats(allow_nan=True, allow_infinity=True),
       start=st.integers(-10, 40))
def test_bad_walk_arguments_named(data, p, start):
    n, src, dst, weights = data
    g = Graph.from_edges(src, dst, weights, n_nodes=n)
    if not (np.isfinite(p) and p > 0):
        assert_raises_named(ValueError, "p must", lambda: random_walks(g, 5, 1, p=p, rng=0))
    if not 0 <= start < n:
        assert_raises_named(IndexError, "start_nodes",
                            lambda: random_walks(g, 5, 1, start_nodes=[0, start], rng=0))
    else:
        walks = random_walks(g, 5, 2, start_nodes=[start], rng=0)
        assert (walks[:, 0] == start).all()
