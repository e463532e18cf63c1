"""Graph construction: CSR arrays checked against scipy and a brute-force dict model."""

import pickle
from collections import defaultdict

import numpy as np
import pytest
import scipy.sparse

from dlkernels._lib.persist import save_arrays
from dlkernels.graph import Graph


def model(src, dst, weights=None, directed=False, self_loops=False):
    """{(u, v): weight} of the merged graph, built edge by edge."""
    edges = defaultdict(float)
    w = np.ones(len(src)) if weights is None else weights
    for a, b, x in zip(np.asarray(src).tolist(), np.asarray(dst).tolist(), np.asarray(w).tolist()):
        if a == b and not self_loops:
            continue
        if x == 0:
            continue
        edges[a, b] += x
        if not directed and a != b:
            edges[b, a] += x
    if weights is None:  # unweighted: repeats collapse to one edge of weight 1
        return {key: 1.0 for key in edges}
    return dict(edges)


def as_dict(g):
    out = {}
    for v in range(g.n_nodes):
        for x, w in zip(g.neighbors(v).tolist(), g.edge_weights(v).tolist()):
            out[v, x] = w
    return out


def random_edges(rng, n, m, weighted=True, zeros=0.1):
    src = rng.integers(0, n, m)
    dst = rng.integers(0, n, m)
    # Plenty of repeats and self-loops on purpose.
    dst[: m // 5] = src[: m // 5]
    src[m // 5: m // 3] = src[0]
    w = None
    if weighted:
        w = rng.choice([0.5, 1.0, 2.0, 3.25], m)
        w[rng.random(m) < zeros] = 0.0
    return src, dst, w


class TestFromEdges:
    @pytest.mark.parametrize("directed", [False, True])
    @pytest.mark.parametrize("self_loops", [False, True])
    @pytest.mark.parametrize("weighted", [False, True])
    def test_matches_brute_force(self, rng, directed, self_loops, weighted):
        n = 40
        src, dst, w = random_edges(rng, n, 400, weighted)
        g = Graph.from_edges(src, dst, w, directed=directed, self_loops=self_loops, n_nodes=n + 5)
        want = model(src, dst, w, directed, self_loops)
        got = as_dict(g)
        assert got.keys() == want.keys()
        for key in want:
            assert got[key] == pytest.approx(want[key], rel=1e-12)
        assert g.n_nodes == n + 5 and g.degree()[n:].sum() == 0  # isolated nodes kept
        assert g.directed is directed and g.weighted is weighted
        assert g.indptr.dtype == np.int64 and g.indices.dtype == np.int32
        for v in range(g.n_nodes):
            assert (np.diff(g.neighbors(v)) > 0).all()
        loops = sum(1 for a, b in want if a == b)
        assert g.n_edges == (len(want) if directed else (len(want) + loops) // 2)

    def test_matches_scipy(self, rng):
        n = 300
        src, dst, w = random_edges(rng, n, 5000)
        g = Graph.from_edges(src, dst, w, directed=True, self_loops=True, n_nodes=n)
        ref = scipy.sparse.coo_array((w, (src, dst)), shape=(n, n)).tocsr()
        ref.sum_duplicates()
        ref.eliminate_zeros()
        ref.sort_indices()
        np.testing.assert_array_equal(g.indptr, ref.indptr)
        np.testing.assert_array_equal(g.indices, ref.indices)
        np.testing.assert_allclose(g.weights, ref.data, rtol=1e-12)
        # undirected = A + A^T with the diagonal counted once
        g2 = Graph.from_edges(src, dst, w, directed=False, self_loops=True, n_nodes=n)
        a = scipy.sparse.coo_array((w, (src, dst)), shape=(n, n)).toarray()
        sym = a + a.T - np.diag(np.diag(a))
        np.testing.assert_allclose(g2.to_scipy().toarray(), sym, rtol=1e-12)

    def test_undirected_reverse_duplicates_are_one_edge(self):
        g = Graph.from_edges([0, 1, 0], [1, 0, 1], weights=[1.0, 2.0, 4.0])
        assert g.n_edges == 1 and g.edge_weights(0).tolist() == [7.0] == g.edge_weights(1).tolist()

    def test_unweighted_repeats_collapse(self):
        g = Graph.from_edges([0, 0, 0, 1], [1, 1, 1, 2], directed=True)
        assert g.weights is None and g.neighbors(0).tolist() == [1] and g.n_edges == 2

    def test_self_loop_stored_once(self):
        g = Graph.from_edges([0, 0], [0, 1], weights=[2.0, 1.0], self_loops=True)
        assert g.neighbors(0).tolist() == [0, 1] and g.edge_weights(0).tolist() == [2.0, 1.0]
        assert g.n_edges == 2

    def test_zero_weights_dropped(self):
        g = Graph.from_edges([0, 1], [1, 2], weights=[0.0, 1.0], n_nodes=3)
        assert g.neighbors(0).size == 0 and g.neighbors(1).tolist() == [2]

    def test_edgeless_graph_with_nodes(self):
        g = Graph.from_edges([], [], n_nodes=3)
        assert g.n_nodes == 3 and g.n_edges == 0

    def test_arrays_read_only(self):
        g = Graph.from_edges([0, 1], [1, 2], weights=[1.0, 2.0])
        for arr in (g.indptr, g.indices, g.weights):
            with pytest.raises(ValueError):
                arr[0] = 0

    def test_accepts_tensors_and_lists(self):
        torch = pytest.importorskip("torch")
        g = Graph.from_edges(torch.tensor([0, 1]), torch.tensor([1, 2]),
                             weights=torch.tensor([1.0, 2.0]))
        assert as_dict(g) == as_dict(Graph.from_edges([0, 1], [1, 2], [1.0, 2.0]))

    @pytest.mark.parametrize("call, exc, name", [
        (lambda: Graph.from_edges([0, -1], [1, 2]), ValueError, "src"),
        (lambda: Graph.from_edges([0, 1], [1, 5], n_nodes=3), ValueError, "dst"),
        (lambda: Graph.from_edges([0, 1], [1]), ValueError, "src and dst"),
        (lambda: Graph.from_edges([0.0, 1.0], [1, 2]), TypeError, "src"),
        (lambda: Graph.from_edges([[0, 1]], [[1, 2]]), ValueError, "src"),
        (lambda: Graph.from_edges([0, 1], [1, 2], weights=[1.0, np.nan]), ValueError, "weights"),
        (lambda: Graph.from_edges([0, 1], [1, 2], weights=[1.0, -2.0]), ValueError, "weights"),
        (lambda: Graph.from_edges([0, 1], [1, 2], weights=[1.0, np.inf]), ValueError, "weights"),
        (lambda: Graph.from_edges([0, 1], [1, 2], weights=[1.0]), ValueError, "weights"),
        (lambda: Graph.from_edges([0, 1], [1, 2], weights=["a", "b"]), TypeError, "weights"),
        (lambda: Graph.from_edges([0, 1], [1, 2], weights=[1e308, 1e308]), ValueError, "weights"),
        (lambda: Graph.from_edges([], []), ValueError, "empty"),
        (lambda: Graph.from_edges([], [], n_nodes=0), ValueError, "n_nodes"),
        (lambda: Graph.from_edges([0], [1], n_nodes=2**31), ValueError, "n_nodes"),
        (lambda: Graph.from_edges([0], [2**31]), ValueError, "dst"),
        (lambda: Graph.from_edges([0], [1], directed=1), TypeError, "directed"),
        (lambda: Graph.from_edges([0], [1], self_loops="yes"), TypeError, "self_loops"),
        (lambda: Graph.from_edges([0], [1], n_threads=0), ValueError, "n_threads"),
    ])
    def test_bad_input(self, call, exc, name):
        with pytest.raises(exc, match=name):
            call()


class TestFromScipy:
    @pytest.mark.parametrize("fmt", ["csr", "csc", "coo", "lil"])
    def test_directed_roundtrip(self, rng, fmt):
        a = scipy.sparse.random_array((50, 50), density=0.1, format=fmt, rng=rng)
        g = Graph.from_scipy(a, directed=True, self_loops=True)
        np.testing.assert_array_equal(g.to_scipy().toarray(), a.toarray())
        assert g.weighted

    def test_undirected_symmetric(self, rng):
        a = scipy.sparse.random_array((60, 60), density=0.1, rng=rng).toarray()
        a = a + a.T
        g = Graph.from_scipy(scipy.sparse.csr_array(a), self_loops=True)
        np.testing.assert_allclose(g.to_scipy().toarray(), a, rtol=1e-15)
        g2 = Graph.from_scipy(scipy.sparse.csr_matrix(a))  # diagonal dropped
        np.testing.assert_allclose(g2.to_scipy().toarray(), a - np.diag(np.diag(a)), rtol=1e-15)
        g3 = Graph.from_scipy(scipy.sparse.csr_array(a), weighted=False)
        assert g3.weights is None
        np.testing.assert_array_equal(g3.to_scipy().toarray(), (a - np.diag(np.diag(a))) > 0)

    def test_explicit_zeros_dropped(self):
        a = scipy.sparse.csr_array((np.array([0.0, 1.0]), np.array([1, 0]), np.array([0, 1, 2])),
                                   shape=(2, 2))
        g = Graph.from_scipy(a, directed=True)
        assert g.neighbors(0).size == 0 and g.neighbors(1).tolist() == [0]

    @pytest.mark.parametrize("matrix, exc, name", [
        (np.eye(3), TypeError, "matrix"),
        (scipy.sparse.csr_array((2, 3)), ValueError, "square"),
        (scipy.sparse.csr_array((0, 0)), ValueError, "empty"),
        (scipy.sparse.csr_array(np.array([[0, 1.0], [0, 0]])), ValueError, "symmetric"),
        (scipy.sparse.csr_array(np.array([[0, 1.0], [2.0, 0]])), ValueError, "symmetric"),
        (scipy.sparse.csr_array(np.array([[0, -1.0], [-1.0, 0]])), ValueError, "matrix values"),
        (scipy.sparse.csr_array(np.array([[0, np.nan], [np.nan, 0]])), ValueError, "matrix values"),
    ])
    def test_bad_input(self, matrix, exc, name):
        with pytest.raises(exc, match=name):
            Graph.from_scipy(matrix)


class TestConstructorAndPersistence:
    def test_csr_constructor_checks(self):
        g = Graph([0, 1, 2], [1, 0], [2.0, 2.0])
        assert as_dict(g) == {(0, 1): 2.0, (1, 0): 2.0}
        cases = [
            (([0, 1], [0, 1]), ValueError, "indptr must run"),
            (([0, 2, 1, 2], [1, 0]), ValueError, "non-decreasing"),
            (([0, 2, 2], [1, 1]), ValueError, "strictly increasing"),
            (([0, 1, 2], [1, 2]), ValueError, "indices must lie"),
            (([0, 1, 1], [1]), ValueError, "symmetric"),
            (([0], []), ValueError, "indptr"),
            (([0.0, 1.0, 2.0], [1, 0]), TypeError, "indptr"),
        ]
        for args, exc, msg in cases:
            with pytest.raises(exc, match=msg):
                Graph(*args)
        with pytest.raises(ValueError, match="symmetric"):
            Graph([0, 1, 2], [1, 0], [1.0, 2.0])
        with pytest.raises(ValueError, match="weights must be > 0"):
            Graph([0, 1, 2], [1, 0], [0.0, 0.0])
        with pytest.raises(ValueError, match="node_ids"):
            Graph([0, 1, 2], [1, 0], node_ids=["a", "a"])
        with pytest.raises(ValueError, match="node_ids"):
            Graph([0, 1, 2], [1, 0], node_ids=["a"])
        assert Graph([0, 1, 1], [1], directed=True).n_edges == 1

    @pytest.mark.parametrize("weighted", [False, True])
    def test_save_load_pickle(self, rng, tmp_path, weighted):
        src, dst, w = random_edges(rng, 30, 200, weighted)
        g = Graph.from_edges(src, dst, w, directed=weighted)
        g._node_ids = np.array([f"n{i}" for i in range(g.n_nodes)])
        path = tmp_path / "g.npz"
        g.save(path)
        for h in (Graph.load(path), pickle.loads(pickle.dumps(g))):
            np.testing.assert_array_equal(h.indptr, g.indptr)
            np.testing.assert_array_equal(h.indices, g.indices)
            np.testing.assert_array_equal(h.weights, g.weights)
            np.testing.assert_array_equal(h.node_ids, g.node_ids)
            assert h.directed == g.directed and repr(h) == repr(g)
            np.testing.assert_array_equal(h._table, g._table)
            np.testing.assert_array_equal(h._totals, g._totals)

    def test_load_refuses_bad_files(self, tmp_path):
        path = tmp_path / "bad.npz"
        save_arrays(path, "Graph", indptr=np.array([0, 1, 2]), indices=np.array([1, 5]),
                    directed=np.array(True))
        with pytest.raises(ValueError, match="indices"):
            Graph.load(path)
        save_arrays(path, "Graph", indptr=np.array([0, 1, 2]))
        with pytest.raises(ValueError, match="Graph file that lacks"):
            Graph.load(path)
        save_arrays(path, "AliasSampler", indptr=np.array([0, 1, 2]))
        with pytest.raises(ValueError, match="not a Graph"):
            Graph.load(path)

    def test_accessors(self):
        g = Graph.from_edges([0, 1], [1, 2], weights=[1.5, 2.5], directed=True)
        assert g.degree().tolist() == [1, 1, 0]
        assert g.edge_weights(1).tolist() == [2.5]
        assert Graph.from_edges([0], [1]).edge_weights(0).tolist() == [1.0]
        with pytest.raises(IndexError, match="v must"):
            g.neighbors(3)
        with pytest.raises(TypeError, match="v must"):
            g.neighbors(1.0)
        assert "directed" in repr(g) and "weighted" in repr(g)
