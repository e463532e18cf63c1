"""Walks and graphs at extreme values: absurd sizes, extreme p and q, weights near
the float64 limit, binary files; and graphs memory-mapped from their files."""

import re
import time

import numpy as np
import pytest

from dlkernels import FileFormatError
from dlkernels.graph import Graph, random_walks


def test_walks_that_cannot_fit_are_refused_at_once():
    g = Graph.from_edges([0, 1], [1, 2])
    started = time.perf_counter()
    with pytest.raises(ValueError, match="walk_length x walks_per_node x start nodes asks for"):
        random_walks(g, 2_000_000_000, 10, rng=0)
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize("name", ["walk_length", "walks_per_node"])
@pytest.mark.parametrize("value", [2**63, 2**64])
def test_huge_counts_are_value_errors(name, value):
    g = Graph.from_edges([0, 1], [1, 2])
    with pytest.raises(ValueError, match=name):
        random_walks(g, **{name: value}, rng=0)


def test_graph_constructors_refuse_huge_counts_by_name():
    for call, name in [(lambda: Graph.from_edges([0], [1], n_nodes=2**64), "n_nodes"),
                       (lambda: Graph.from_edges([0], [1], n_nodes=2**40), "n_nodes"),
                       (lambda: Graph.from_edges([0], [2**63]), "dst"),
                       (lambda: Graph(np.array([0, 2**64 - 1], dtype=np.uint64), [1]),
                        "indptr")]:
        with pytest.raises(ValueError, match=name):
            call()
    # Thread counts beyond the machine are capped, not overflowed.
    g = Graph.from_edges([0, 1], [1, 2], weights=[1.0, 2.0], n_threads=2**63)
    np.testing.assert_array_equal(random_walks(g, 4, 2, rng=0, n_threads=2**63),
                                  random_walks(g, 4, 2, rng=0, n_threads=1))


@pytest.mark.parametrize("p, q, name", [(1e-12, 1.0, "p"), (1.0, 1e12, "q"),
                                         (5e-324, 1.0, "p"), (1.0, 1e300, "q")])
def test_p_and_q_outside_their_range_are_refused(p, q, name):
    g = Graph.from_edges([0, 1], [1, 2])
    with pytest.raises(ValueError, match=f"{name} must be"):
        random_walks(g, 5, 1, p=p, q=q, rng=0)


def test_binary_edge_list_names_file_and_line(tmp_path):
    path = tmp_path / "garbage.bin"
    path.write_bytes(b"0 1\n1 2\n\xff\xfe\x00\x80 junk\n")
    with pytest.raises(ValueError, match=re.escape(str(path)) + r":3: not UTF-8 text"):
        Graph.read_edgelist(path)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("directed", [False, True])
def test_memory_mapped_graph_walks_like_the_loaded_one(tmp_path, weighted, directed):
    rng = np.random.default_rng(0)
    src, dst = rng.integers(0, 300, 2000), rng.integers(0, 300, 2000)
    g = Graph.from_edges(src, dst, rng.random(2000) + 0.1 if weighted else None,
                         directed=directed)
    g.save(tmp_path / "g.npz")
    mapped = Graph.load(tmp_path / "g.npz", mmap=True)
    assert isinstance(mapped.indices.base, np.memmap) or isinstance(mapped.indices, np.memmap) \
        or mapped.indices.base is not None
    assert not mapped.indices.flags.writeable
    np.testing.assert_array_equal(random_walks(mapped, 20, 2, p=0.5, q=2.0, rng=1),
                                  random_walks(g, 20, 2, p=0.5, q=2.0, rng=1))


def test_memory_mapping_checks_the_checksum(tmp_path):
    g = Graph.from_edges(np.arange(100), (np.arange(100) + 1) % 100, directed=True)
    path = tmp_path / "g.npz"
    g.save(path)
    data = bytearray(path.read_bytes())
    at = data.find(np.arange(1, 40, dtype=np.int32).tobytes())
    assert at > 0
    at += 8
    data[at] ^= 1                    # one edge id of the indices member changed
    path.write_bytes(bytes(data))
    for mmap in (False, True):
        with pytest.raises(FileFormatError, match="g.npz"):
            Graph.load(path, mmap=mmap)
