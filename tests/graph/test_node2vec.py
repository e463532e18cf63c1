"""Node2Vec: walks + SkipGram on a block-model graph; labels, formats, bad input."""

import re

import numpy as np
import pytest

from dlkernels.graph import Graph, Node2Vec


@pytest.fixture(scope="module")
def sbm_graph():
    rng = np.random.default_rng(7)
    n, k = 250, 5
    blocks = np.arange(n) * k // n
    prob = np.where(blocks[:, None] == blocks[None, :], 0.2, 0.004)
    src, dst = np.nonzero(np.triu(rng.random((n, n)) < prob, 1))
    return Graph.from_edges(src, dst), blocks


def test_blocks_classified(sbm_graph):
    pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    graph, blocks = sbm_graph
    model = Node2Vec(dim=32, walk_length=30, walks_per_node=5, window=5, p=1.0, q=0.5,
                     rng=0, n_threads=2)
    vectors = model.fit_transform(graph)
    assert vectors.shape == (graph.n_nodes, 32)
    acc = cross_val_score(LogisticRegression(max_iter=2000), vectors, blocks, cv=5).mean()
    assert acc >= 0.9


def test_reproducible_on_one_thread(sbm_graph):
    graph, _ = sbm_graph
    a = Node2Vec(dim=8, walk_length=10, walks_per_node=2, rng=3, n_threads=1).fit(graph)
    b = Node2Vec(dim=8, walk_length=10, walks_per_node=2, rng=3, n_threads=1).fit(graph)
    np.testing.assert_array_equal(a.vectors, b.vectors)


def test_labels_in_word2vec_output_and_save_load(tmp_path):
    path = tmp_path / "g.edg"
    path.write_text("alice bob\nbob carol\ncarol alice\ndave erin\nerin frank\nfrank dave\n")
    graph = Graph.read_edgelist(path)
    model = Node2Vec(dim=4, walk_length=10, walks_per_node=20, window=2, rng=0,
                     n_threads=1).fit(graph)
    out = tmp_path / "emb.txt"
    model.save_word2vec_format(out)
    lines = out.read_text().splitlines()
    assert lines[0] == "6 4"
    assert [line.split()[0] for line in lines[1:]] == ["alice", "bob", "carol", "dave", "erin", "frank"]
    model.save(tmp_path / "m.npz")
    loaded = Node2Vec.load(tmp_path / "m.npz")
    assert repr(loaded) == repr(model)
    np.testing.assert_array_equal(loaded.vectors, model.vectors)
    assert loaded.node_ids.tolist() == model.node_ids.tolist()


@pytest.mark.parametrize("kwargs, exc, name", [
    ({"walk_length": 0}, ValueError, "walk_length"), ({"walks_per_node": 0}, ValueError, "walks_per_node"),
    ({"p": 0.0}, ValueError, "p"), ({"q": -1.0}, ValueError, "q"), ({"dim": 0}, ValueError, "dim"),
    ({"window": 0}, ValueError, "window"), ({"epochs": 0}, ValueError, "epochs"),
    ({"alpha": 0.0}, ValueError, "alpha"), ({"n_threads": 1.5}, TypeError, "n_threads"),
])
def test_bad_parameters(kwargs, exc, name):
    with pytest.raises(exc, match=re.escape(name)):
        Node2Vec(**kwargs)


def test_bad_graph_leaves_model_unchanged(sbm_graph):
    graph, _ = sbm_graph
    model = Node2Vec(dim=4, walk_length=5, walks_per_node=1, rng=0, n_threads=1).fit(graph)
    before = model.vectors.copy()
    with pytest.raises(TypeError, match="graph"):
        model.fit(np.zeros((3, 3)))
    edgeless = Graph(np.zeros(4, dtype=np.int64), np.zeros(0, dtype=np.int64))
    with pytest.raises(ValueError, match="nothing to train on"):
        model.fit(edgeless)
    with pytest.raises(TypeError, match="progress"):
        model.fit(graph, progress=1)
    np.testing.assert_array_equal(model.vectors, before)
    with pytest.raises(ValueError, match="not fitted"):
        Node2Vec().vectors
