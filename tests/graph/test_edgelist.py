"""Graph.read_edgelist: formats, id mapping, merging, and errors with file:line."""

import numpy as np
import pytest

from dlkernels.graph import Graph


def write(tmp_path, text, name="edges.txt"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def edges_of(g):
    """{(label_u, label_v): weight} with the original labels."""
    ids = g.node_ids.tolist()
    return {(ids[v], ids[int(x)]): w for v in range(g.n_nodes)
            for x, w in zip(g.neighbors(v), g.edge_weights(v).tolist())}


class TestFormats:
    def test_integer_ids_comments_tabs_blank_lines(self, tmp_path):
        path = write(tmp_path, "# header\n\n10 20\n20\t30   # trailing comment\n  30 10\n\t\n")
        g = Graph.read_edgelist(path)
        assert g.node_ids.tolist() == [10, 20, 30] and g.node_ids.dtype == np.int64
        assert g.n_edges == 3 and not g.directed and g.weights is None
        assert edges_of(g) == {(10, 20): 1.0, (20, 10): 1.0, (20, 30): 1.0, (30, 20): 1.0,
                               (30, 10): 1.0, (10, 30): 1.0}

    def test_integer_ids_sorted_numerically(self, tmp_path):
        g = Graph.read_edgelist(write(tmp_path, "100 9\n-5 9\n"), directed=True)
        assert g.node_ids.tolist() == [-5, 9, 100]
        assert edges_of(g) == {(100, 9): 1.0, (-5, 9): 1.0}

    def test_string_ids(self, tmp_path):
        g = Graph.read_edgelist(write(tmp_path, "b a\nc\tb\n7 a\n07 c\n"), directed=True)
        assert g.node_ids.tolist() == ["07", "7", "a", "b", "c"]  # all strings once one is
        assert edges_of(g) == {("b", "a"): 1.0, ("c", "b"): 1.0, ("7", "a"): 1.0,
                               ("07", "c"): 1.0}

    def test_weighted_and_merged(self, tmp_path):
        text = "a b 1.5\nb a 2\na c 1e-3\na b 0.5\nc c 4\n"
        g = Graph.read_edgelist(write(tmp_path, text), weighted=True)
        assert edges_of(g) == {("a", "b"): 4.0, ("b", "a"): 4.0, ("a", "c"): 1e-3,
                               ("c", "a"): 1e-3}
        g = Graph.read_edgelist(write(tmp_path, text), weighted=True, directed=True,
                                self_loops=True)
        assert edges_of(g) == {("a", "b"): 2.0, ("b", "a"): 2.0, ("a", "c"): 1e-3,
                               ("c", "c"): 4.0}

    def test_unweighted_ignores_third_column(self, tmp_path):
        g = Graph.read_edgelist(write(tmp_path, "1 2 0.5\n2 3\n"))
        assert g.weights is None and g.n_edges == 2

    def test_matches_from_edges(self, tmp_path, rng):
        src, dst = rng.integers(0, 500, 3000), rng.integers(0, 500, 3000)
        w = rng.random(3000) + 0.01
        lines = "".join(f"{a}\t{b}\t{x!r}\n"
                        for a, b, x in zip(src.tolist(), dst.tolist(), w.tolist()))
        g = Graph.read_edgelist(write(tmp_path, lines), weighted=True)
        labels = np.unique(np.concatenate([src, dst]))
        ref = Graph.from_edges(np.searchsorted(labels, src), np.searchsorted(labels, dst), w)
        np.testing.assert_array_equal(g.node_ids, labels)
        np.testing.assert_array_equal(g.indptr, ref.indptr)
        np.testing.assert_array_equal(g.indices, ref.indices)
        np.testing.assert_allclose(g.weights, ref.weights, rtol=1e-12)

    def test_save_load_keeps_labels(self, tmp_path):
        g = Graph.read_edgelist(write(tmp_path, "x y\ny z\n"))
        g.save(tmp_path / "g.npz")
        h = Graph.load(tmp_path / "g.npz")
        assert h.node_ids.tolist() == ["x", "y", "z"] and edges_of(h) == edges_of(g)


class TestErrors:
    @pytest.mark.parametrize("text, weighted, line, what", [
        ("1 2\n3\n", False, 2, "expected"),
        ("1 2\n# c\n1 2 3 4\n", False, 3, "expected"),
        ("1 2 1.0\n2 3\n", True, 2, "expected"),
        ("1 2 1.0\n2 3 abc\n", True, 2, "weight must be a number"),
        ("1 2 nan\n", True, 1, "finite"),
        ("1 2 inf\n", True, 1, "finite"),
        ("\n\n1 2 -1\n", True, 3, "non-negative"),
    ])
    def test_malformed_lines_name_file_and_line(self, tmp_path, text, weighted, line, what):
        path = write(tmp_path, text)
        with pytest.raises(ValueError, match=f"edges.txt:{line}: .*{what}"):
            Graph.read_edgelist(path, weighted=weighted)

    @pytest.mark.parametrize("text", ["", "# only a comment\n\n"])
    def test_no_edges(self, tmp_path, text):
        with pytest.raises(ValueError, match="no edges"):
            Graph.read_edgelist(write(tmp_path, text))

    def test_missing_file_and_bad_flags(self, tmp_path):
        with pytest.raises(FileNotFoundError):
            Graph.read_edgelist(tmp_path / "absent.txt")
        path = write(tmp_path, "1 2\n")
        with pytest.raises(TypeError, match="weighted"):
            Graph.read_edgelist(path, weighted="yes")
        with pytest.raises(TypeError, match="directed"):
            Graph.read_edgelist(path, directed=None)

    def test_zero_weight_lines_drop_the_edge(self, tmp_path):
        g = Graph.read_edgelist(write(tmp_path, "a b 0\nb c 1\n"), weighted=True)
        assert edges_of(g) == {("b", "c"): 1.0, ("c", "b"): 1.0} and g.n_nodes == 3


class TestFastAndSlowPaths:
    """numpy.loadtxt reads plain integer files; the Python line loop must agree with it."""

    @pytest.mark.parametrize("weighted, columns", [(False, 2), (False, 3), (True, 3)])
    def test_same_graph(self, tmp_path, rng, monkeypatch, weighted, columns):
        from dlkernels.graph import _edgelist

        src, dst = rng.integers(-50, 10**12, 300), rng.integers(-50, 10**12, 300)
        src[::3] = dst[1::3]  # shared ids
        w = rng.random(300)
        lines = "# numbers\n" + "".join(
            f"{a} {b}" + (f"\t{x!r}" if columns == 3 else "") + ("  # c\n" if a % 2 else "\n")
            for a, b, x in zip(src.tolist(), dst.tolist(), w.tolist()))
        path = write(tmp_path, lines)
        assert _edgelist._read_fast(str(path), weighted) is not None  # the fast path is taken
        fast = Graph.read_edgelist(path, weighted=weighted, directed=True)
        monkeypatch.setattr(_edgelist, "_read_fast", lambda name, weighted: None)
        slow = Graph.read_edgelist(path, weighted=weighted, directed=True)
        np.testing.assert_array_equal(fast.node_ids, slow.node_ids)
        assert fast.node_ids.dtype == slow.node_ids.dtype == np.int64
        np.testing.assert_array_equal(fast.indptr, slow.indptr)
        np.testing.assert_array_equal(fast.indices, slow.indices)
        if weighted:
            np.testing.assert_array_equal(fast.weights, slow.weights)
