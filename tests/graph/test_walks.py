"""random_walks: exactness of the node2vec transitions, walk validity, determinism.

Chi-square tests draw at a fixed seed; each has false-alarm rate ALPHA = 1e-4
(see tests/conftest.py).
"""

import numpy as np
import pytest

from dlkernels.graph import Graph, random_walks

PQ = [0.25, 1.0, 4.0]

# A small graph around the pair (prev, cur) = (1, 0): the out-neighbours of 0 are
# the return node 1, two common neighbours of 1 (2, 3: bias 1) and three nodes at
# distance 2 from 1 (4, 5, 6: bias 1/q). Weights span a wide range on purpose.
EDGES = [(0, 1), (0, 2), (0, 3), (0, 4), (0, 5), (0, 6), (1, 2), (1, 3), (1, 7), (4, 5), (6, 7),
         (2, 3)]
WEIGHTS = [3.0, 0.5, 7.0, 1.0, 0.2, 2.5, 1.0, 4.0, 1.5, 2.0, 1.0, 0.7]


def transition(g, prev, cur, p, q):
    """node2vec's next-node probabilities from (prev, cur), from the formula."""
    probs = np.zeros(g.n_nodes)
    prev_out = set(g.neighbors(prev).tolist())
    for x, w in zip(g.neighbors(cur).tolist(), g.edge_weights(cur).tolist()):
        bias = 1 / p if x == prev else (1.0 if x in prev_out else 1 / q)
        probs[x] = w * bias
    return probs / probs.sum()


def next_nodes(g, prev, cur, p, q, n, seed):
    """Third nodes of walks that went prev -> cur (drawn from walks started at prev)."""
    walks = random_walks(g, walk_length=3, walks_per_node=n, p=p, q=q, start_nodes=[prev],
                         rng=seed, n_threads=2)
    through = walks[walks[:, 1] == cur]
    assert through.shape[0] > n // 20
    return through[:, 2]


def edge_set(g):
    return {(v, int(x)) for v in range(g.n_nodes) for x in g.neighbors(v)}


class TestExactness:
    @pytest.mark.parametrize("p", PQ)
    @pytest.mark.parametrize("q", PQ)
    @pytest.mark.parametrize("weighted", [False, True])
    def test_second_order_transition(self, assert_chisquare, seed, p, q, weighted):
        src, dst = np.array(EDGES).T
        g = Graph.from_edges(src, dst, WEIGHTS if weighted else None)
        draws = next_nodes(g, 1, 0, p, q, 120_000, seed)
        assert_chisquare(draws, transition(g, 1, 0, p, q))

    @pytest.mark.parametrize("q", [1.0, 4.0])
    def test_step_after_a_return(self, assert_chisquare, seed, q):
        # p = 0.25 makes the return edge an outlier block, whose mass uses the
        # weight of the edge just taken; after walking 1 -> 0 -> 1 (a return) the
        # next step, from (0, 1), must still follow the formula.
        src, dst = np.array(EDGES).T
        g = Graph.from_edges(src, dst, WEIGHTS)
        walks = random_walks(g, walk_length=4, walks_per_node=150_000, p=0.25, q=q,
                             start_nodes=[1], rng=seed, n_threads=2)
        back = walks[(walks[:, 1] == 0) & (walks[:, 2] == 1)]
        assert back.shape[0] > 10_000
        assert_chisquare(back[:, 3], transition(g, 0, 1, 0.25, q))

    @pytest.mark.parametrize("p, q", [(0.25, 4.0), (4.0, 0.25), (1.0, 1.0)])
    def test_directed(self, assert_chisquare, seed, p, q):
        # Directed: "neighbour of prev" means an out-neighbour of prev. From
        # (prev, cur) = (1, 0): 0 -> 1 returns, 1 -> 2 exists (bias 1) but 3 -> 1
        # does not matter, 0 -> 3 with 1 -> 3 absent is at distance 2.
        src = [1, 0, 0, 0, 0, 1, 3, 2]
        dst = [0, 1, 2, 3, 4, 2, 1, 4]
        w = [1.0, 2.0, 1.0, 3.0, 0.5, 1.0, 1.0, 1.0]
        g = Graph.from_edges(src, dst, w, directed=True)
        draws = next_nodes(g, 1, 0, p, q, 60_000, seed)
        assert_chisquare(draws, transition(g, 1, 0, p, q))
        # Without the edge 0 -> 1 there is no return move at all.
        g2 = Graph.from_edges(src[1:], dst[1:], w[1:], directed=True, n_nodes=5)
        g2 = Graph.from_edges(src[2:] + [1], dst[2:] + [0], w[2:] + [1.0], directed=True)
        draws = next_nodes(g2, 1, 0, p, q, 60_000, seed)
        assert not (draws == 1).any()
        assert_chisquare(draws, transition(g2, 1, 0, p, q))

    @pytest.mark.parametrize("p, q", [(1.0, 1e4), (1e4, 1e4), (1e-4, 1.0), (1e4, 1e-4)])
    def test_extreme_parameters(self, assert_chisquare, seed, p, q):
        # Acceptance rates near 1e-4 send steps to the exact fallback after a few
        # dozen rejections; the outlier block takes p = 1e-4. All must stay exact.
        src, dst = np.array(EDGES).T
        g = Graph.from_edges(src, dst, WEIGHTS)
        draws = next_nodes(g, 1, 0, p, q, 60_000, seed)
        assert_chisquare(draws, transition(g, 1, 0, p, q))

    @pytest.mark.parametrize("p, q", [(1e-3, 1.0), (1.0, 1e-4), (1e-9, 1e9), (1e9, 1e-9)])
    def test_weights_near_the_float64_limit(self, assert_chisquare, seed, p, q):
        # The outlier block's mass w * (1/p - M) and the fallback's w * bias pass
        # 1.8e308 here; both are computed as ratios that cannot overflow.
        src, dst = np.array(EDGES).T
        g = Graph.from_edges(src, dst, np.array(WEIGHTS) * 1e306)
        draws = next_nodes(g, 1, 0, p, q, 60_000, seed)
        # The probabilities do not depend on the scale of the weights.
        assert_chisquare(draws, transition(Graph.from_edges(src, dst, WEIGHTS), 1, 0, p, q))

    def test_high_degree_rows(self, assert_chisquare, seed, rng):
        # Rows long enough that the binary search goes several levels deep.
        n = 400
        src = np.concatenate([np.zeros(300, int), np.ones(150, int), rng.integers(2, n, 2000)])
        dst = np.concatenate([rng.permutation(np.arange(1, n))[:300],
                              rng.permutation(np.arange(2, n))[:150], rng.integers(2, n, 2000)])
        w = rng.pareto(1.0, src.size) + 0.01
        g = Graph.from_edges(src, dst, w)
        assert 1 in g.neighbors(0)
        draws = next_nodes(g, 1, 0, 0.5, 2.0, 400_000, seed)
        assert_chisquare(draws, transition(g, 1, 0, 0.5, 2.0))

    @pytest.mark.parametrize("p, q", [(1.0, 1.0), (0.25, 4.0)])
    def test_first_step_follows_weights(self, assert_chisquare, seed, p, q):
        src, dst = np.array(EDGES).T
        g = Graph.from_edges(src, dst, WEIGHTS)
        walks = random_walks(g, walk_length=2, walks_per_node=50_000, p=p, q=q, start_nodes=[0],
                             rng=seed)
        w = np.zeros(g.n_nodes)
        w[g.neighbors(0)] = g.edge_weights(0)
        assert_chisquare(walks[:, 1], w / w.sum())

    def test_unweighted_first_order_is_uniform(self, assert_chisquare, seed):
        g = Graph.from_edges(np.zeros(37, int), np.arange(1, 38))
        walks = random_walks(g, walk_length=3, walks_per_node=20_000, start_nodes=[5], rng=seed)
        assert (walks[:, 1] == 0).all()
        assert_chisquare(walks[:, 2], np.r_[0.0, np.full(37, 1 / 37)])


class TestWalks:
    @pytest.mark.parametrize("weighted", [False, True])
    @pytest.mark.parametrize("directed", [False, True])
    @pytest.mark.parametrize("p, q", [(1.0, 1.0), (0.5, 2.0), (3.0, 0.3)])
    def test_every_step_is_an_edge(self, rng, seed, weighted, directed, p, q):
        n = 200
        src, dst = rng.integers(0, n, 800), rng.integers(0, n, 800)
        g = Graph.from_edges(src, dst, rng.random(800) + 0.1 if weighted else None,
                             directed=directed, n_nodes=n + 3)
        walks = random_walks(g, walk_length=30, walks_per_node=3, p=p, q=q, rng=seed)
        assert walks.shape == (3 * g.n_nodes, 30) and walks.dtype == np.int32
        np.testing.assert_array_equal(walks[:, 0], np.tile(np.arange(g.n_nodes), 3))
        edges = edge_set(g)
        deg = g.degree()
        for walk in walks:
            alive = walk[walk >= 0]
            assert (walk[alive.size:] == -1).all()  # padding only at the end
            for a, b in zip(alive[:-1].tolist(), alive[1:].tolist()):
                assert (a, b) in edges
            if alive.size < walk.size:
                assert deg[alive[-1]] == 0  # a walk ends only at a dead end
        assert (walks[:, 1:][walks[:, 0] >= n] == -1).all()  # isolated nodes

    def test_dead_end_padding(self):
        g = Graph.from_edges([0, 1], [1, 2], directed=True)
        walks = random_walks(g, walk_length=5, walks_per_node=1, p=0.5, q=2.0, rng=0)
        np.testing.assert_array_equal(walks, [[0, 1, 2, -1, -1], [1, 2, -1, -1, -1],
                                              [2, -1, -1, -1, -1]])

    def test_start_nodes_and_shapes(self, seed):
        g = Graph.from_edges([0, 1, 2], [1, 2, 3])
        walks = random_walks(g, walk_length=4, walks_per_node=3, start_nodes=[2, 2, 0], rng=seed)
        assert walks.shape == (9, 4)
        np.testing.assert_array_equal(walks[:, 0], [2, 2, 0] * 3)
        assert random_walks(g, walk_length=1, walks_per_node=2, rng=seed).tolist() == \
            [[0], [1], [2], [3]] * 2
        assert random_walks(g, walks_per_node=0, rng=seed).shape == (0, 80)
        assert random_walks(g, start_nodes=[], rng=seed).shape == (0, 80)
        assert random_walks(g, start_nodes=np.int64(3), walks_per_node=1, walk_length=2,
                            rng=seed).tolist() == [[3, 2]]

    @pytest.mark.parametrize("p, q", [(1.0, 1.0), (0.5, 2.0), (0.25, 0.25)])
    @pytest.mark.parametrize("weighted", [False, True])
    def test_thread_invariant(self, assert_thread_invariant, rng, seed, p, q, weighted):
        n = 3000
        src, dst = rng.integers(0, n, 20_000), rng.integers(0, n, 20_000)
        g = Graph.from_edges(src, dst, rng.random(src.size) + 0.1 if weighted else None)
        walks = assert_thread_invariant(
            lambda t: random_walks(g, walk_length=20, walks_per_node=2, p=p, q=q, rng=seed,
                                   n_threads=t))
        again = random_walks(g, walk_length=20, walks_per_node=2, p=p, q=q,
                             rng=np.random.default_rng(seed), n_threads=3)
        np.testing.assert_array_equal(walks, again)
        other = random_walks(g, walk_length=20, walks_per_node=2, p=p, q=q, rng=seed + 1)
        assert (other != walks).any()

    def test_progress_gives_the_same_walks(self, rng, seed, monkeypatch, capsys):
        pytest.importorskip("tqdm")
        from dlkernels.graph import walks as walks_module

        monkeypatch.setattr(walks_module, "PROGRESS_BATCH", 7)
        g = Graph.from_edges(rng.integers(0, 50, 200), rng.integers(0, 50, 200))
        plain = random_walks(g, walk_length=10, walks_per_node=2, p=0.5, q=2.0, rng=seed)
        shown = random_walks(g, walk_length=10, walks_per_node=2, p=0.5, q=2.0, rng=seed,
                             progress=True)
        np.testing.assert_array_equal(plain, shown)

    def test_generator_advances(self):
        g = Graph.from_edges([0, 1, 2], [1, 2, 0])
        gen = np.random.default_rng(0)
        a = random_walks(g, walk_length=30, rng=gen)
        b = random_walks(g, walk_length=30, rng=gen)
        assert (a != b).any()


class TestBadInput:
    @pytest.fixture
    def graph(self):
        return Graph.from_edges([0, 1, 2], [1, 2, 3], weights=[1.0, 2.0, 3.0])

    @pytest.mark.parametrize("kwargs, exc, name", [
        ({"walk_length": 0}, ValueError, "walk_length"),
        ({"walk_length": 2.0}, TypeError, "walk_length"),
        ({"walks_per_node": -1}, ValueError, "walks_per_node"),
        ({"p": 0.0}, ValueError, "p must"),
        ({"p": -1.0}, ValueError, "p must"),
        ({"p": np.nan}, ValueError, "p must"),
        ({"q": 0}, ValueError, "q must"),
        ({"q": np.inf}, ValueError, "q must"),
        ({"q": "2"}, TypeError, "q must"),
        ({"start_nodes": [0, 4]}, IndexError, "start_nodes"),
        ({"start_nodes": [-1]}, IndexError, "start_nodes"),
        ({"start_nodes": [0.5]}, TypeError, "start_nodes"),
        ({"start_nodes": [[0]]}, ValueError, "start_nodes"),
        ({"rng": -1}, ValueError, "rng"),
        ({"rng": "seed"}, TypeError, "rng"),
        ({"n_threads": 0}, ValueError, "n_threads"),
        ({"progress": None}, TypeError, "progress"),
    ])
    def test_named_errors_leave_graph_alone(self, graph, kwargs, exc, name):
        before = (graph.indptr.copy(), graph.indices.copy(), graph.weights.copy(),
                  graph._table.copy(), random_walks(graph, 10, 2, p=0.5, q=2.0, rng=0))
        with pytest.raises(exc, match=name):
            random_walks(graph, **kwargs)
        after = (graph.indptr, graph.indices, graph.weights, graph._table,
                 random_walks(graph, 10, 2, p=0.5, q=2.0, rng=0))
        for a, b in zip(before, after):
            np.testing.assert_array_equal(a, b)

    def test_not_a_graph(self):
        with pytest.raises(TypeError, match="graph"):
            random_walks(np.eye(3))
