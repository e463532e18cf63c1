"""dlkernels.huffman: prefix-free, Kraft equality, optimal against brute force, deterministic."""

import functools
import itertools
import pickle
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dlkernels.huffman import MAX_CODE_LENGTH, CodeTree, balanced_tree, huffman_tree


def optimal_cost(weights) -> float:
    return _optimal_cost(tuple(sorted(float(w) for w in weights)))


@functools.lru_cache(maxsize=None)
def _optimal_cost(weights: tuple) -> float:
    """Least sum(count * length) over all full binary trees, by trying every merge order.

    Every full binary tree over the symbols arises from some sequence of pairwise
    merges, and its cost is the sum of the merged weights, so the minimum over
    all sequences is the optimum (exponential: small inputs only).
    """
    if len(weights) <= 1:
        return 0.0
    best = float("inf")
    for a, b in itertools.combinations(range(len(weights)), 2):
        rest = [w for k, w in enumerate(weights) if k not in (a, b)]
        merged = weights[a] + weights[b]
        best = min(best, merged + optimal_cost(rest + [merged]))
    return best


def check_structure(tree: CodeTree):
    n = tree.n_symbols
    codes = tree.codes()
    assert len(set(codes)) == n
    # Prefix-free: in sorted order a code that prefixes another sits right before one that it prefixes.
    ordered = sorted(codes)
    for a, b in zip(ordered, ordered[1:]):
        assert not b.startswith(a), (a, b)
    # Kraft equality: a full binary tree wastes no code space.
    if n > 1:
        assert sum(2.0 ** -len(c) for c in codes) == pytest.approx(1.0, abs=1e-12)
    assert [len(c) for c in codes] == tree.lengths.tolist()
    # Walking the children from the root by the bits reaches each symbol, via paths.
    for s in range(n):
        node = 0
        for j in range(tree.lengths[s]):
            assert tree.paths[s, j] == node
            child = tree.children[node, tree.bits[s, j]]
            if j + 1 < tree.lengths[s]:
                assert child >= n
                node = child - n
            else:
                assert child == s
        assert (tree.paths[s, tree.lengths[s]:] == -1).all()
        assert (tree.bits[s, tree.lengths[s]:] == -1).all()
    # Breadth-first numbering: parents precede children, depth matches.
    if n > 1:
        internal_children = tree.children[tree.children >= n] - n
        assert np.all(internal_children > 0)
        for k in range(n - 1):
            for c in tree.children[k]:
                assert tree.parent[c] == k
                if c >= n:
                    assert tree.depth[c - n] == tree.depth[k] + 1
        assert np.all(np.diff(tree.parent[n + 1:]) >= 0)


class TestHuffman:
    def test_known_code(self):
        tree = huffman_tree([5, 1, 1, 3])
        assert tree.codes() == ["0", "100", "101", "11"]
        check_structure(tree)

    def test_textbook_lengths(self):
        # Cormen et al.'s example: f:5 e:9 c:12 b:13 d:16 a:45 -> lengths 4 4 3 3 3 1.
        tree = huffman_tree([45, 13, 12, 16, 9, 5])
        assert tree.lengths.tolist() == [1, 3, 3, 3, 4, 4]
        assert tree.expected_length([45, 13, 12, 16, 9, 5]) == pytest.approx(224 / 100)

    @pytest.mark.parametrize("n", range(1, 8))
    def test_optimal_against_brute_force(self, rng, n):
        for _ in range(6):
            counts = rng.integers(0, 20, n).astype(float)
            tree = huffman_tree(counts)
            check_structure(tree)
            assert counts @ tree.lengths == pytest.approx(optimal_cost(counts))

    @given(st.lists(st.integers(0, 1000), min_size=1, max_size=6))
    def test_optimal_hypothesis(self, counts):
        tree = huffman_tree(counts)
        check_structure(tree)
        assert np.dot(counts, tree.lengths) == pytest.approx(optimal_cost(counts))

    def test_single_symbol(self):
        tree = huffman_tree([3.0])
        assert tree.codes() == [""] and tree.n_internal == 0 and tree.max_length == 0
        assert tree.paths.shape == (1, 0)

    def test_ties_are_deterministic(self):
        counts = [2, 1, 2, 1, 2, 1, 2, 1]
        first = huffman_tree(counts)
        for _ in range(3):
            assert huffman_tree(list(counts)) == first
        assert huffman_tree(np.array(counts, dtype=np.float32)).codes() == first.codes()
        # Equal counts keep symbol order: the two first light symbols pair first.
        assert first.parent[1] == first.parent[3]
        # Leaves win ties against merged nodes: the longest code is as short as it can be.
        assert huffman_tree([1, 1, 2]).lengths.tolist() == [2, 2, 1]
        assert huffman_tree([1, 1, 1, 1]).lengths.max() == 2

    def test_zero_counts_and_permutation(self, rng):
        counts = rng.integers(0, 5, 50).astype(float)
        counts[:5] = 0
        tree = huffman_tree(counts)
        check_structure(tree)
        perm = rng.permutation(50)
        other = huffman_tree(counts[perm])
        assert counts @ tree.lengths == pytest.approx(counts[perm] @ other.lengths)

    def test_fibonacci_is_deepest(self):
        fib = [1, 1]
        while len(fib) < 30:
            fib.append(fib[-1] + fib[-2])
        tree = huffman_tree(fib)
        check_structure(tree)
        assert tree.max_length == 29

    def test_huge_counts_do_not_overflow(self):
        tree = huffman_tree([1e308, 1e308, 1e308, 1e308])
        assert tree.lengths.tolist() == [2, 2, 2, 2]

    def test_zipf_vocabulary(self):
        counts = 1.0 / np.arange(1, 100_001)
        tree = huffman_tree(counts)
        assert (2.0 ** -tree.lengths.astype(float)).sum() == pytest.approx(1.0)
        p = counts / counts.sum()
        entropy = -(p * np.log2(p)).sum()
        # Shannon: H <= optimal expected length < H + 1.
        assert entropy <= tree.expected_length(counts) < entropy + 1
        assert tree.max_length <= 40

    def test_pickle(self):
        tree = huffman_tree([3, 1, 4, 1, 5, 9, 2, 6])
        again = pickle.loads(pickle.dumps(tree))
        assert again == tree and again.codes() == tree.codes()
        np.testing.assert_array_equal(again.paths, tree.paths)

    def test_torch_counts(self):
        torch = pytest.importorskip("torch")
        assert huffman_tree(torch.tensor([5, 1, 1, 3])).codes() == ["0", "100", "101", "11"]

    @pytest.mark.parametrize("bad, exc, msg", [
        ([], ValueError, "counts must not be empty"),
        ([1, -1], ValueError, "non-negative"),
        ([1, np.nan], ValueError, "finite"),
        ([[1, 2]], ValueError, "1-dimensional"),
        (["a"], TypeError, "counts"),
    ])
    def test_bad_counts(self, bad, exc, msg):
        with pytest.raises(exc, match=msg):
            huffman_tree(bad)

    def test_bad_symbol(self):
        tree = huffman_tree([1, 2])
        with pytest.raises(IndexError, match="symbol"):
            tree.code(2)
        with pytest.raises(ValueError, match="counts must have shape"):
            tree.expected_length([1, 2, 3])


class TestBalanced:
    @pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13, 100, 1000])
    def test_lengths(self, n):
        tree = balanced_tree(n)
        check_structure(tree)
        if n > 1:
            lo, hi = int(np.floor(np.log2(n))), int(np.ceil(np.log2(n)))
            assert set(tree.lengths.tolist()) <= {lo, hi}
            # As short as possible on average: equals the brute-force optimum for uniform counts.
            assert tree.lengths.sum() == n * lo + 2 * (n - 2**lo)

    @pytest.mark.parametrize("bad, exc", [(0, ValueError), (-1, ValueError), (2.5, TypeError)])
    def test_bad(self, bad, exc):
        with pytest.raises(exc, match="n_symbols"):
            balanced_tree(bad)


# -- bit-packed coding --------------------------------------------------------------
from dlkernels.huffman import (canonical_codes, code_lengths, huffman_decode,  # noqa: E402
                            huffman_encode)


def reference_bits(symbols, lengths) -> str:
    """The stream as a '0'/'1' string, from the canonical codes built by hand."""
    lengths = list(map(int, lengths))
    order = sorted((length, s) for s, length in enumerate(lengths) if length)
    codes, code, prev = {}, 0, order[0][0] if order else 0
    for i, (length, s) in enumerate(order):
        if i:
            code = (code + 1) << (length - prev)
        codes[s] = format(code, f"0{length}b")
        prev = length
    return "".join(codes[int(s)] for s in symbols)


class TestCoding:
    def test_canonical_codes_are_prefix_free_and_ordered(self):
        lengths = code_lengths(np.random.default_rng(1).zipf(1.3, 500) % 60 + 0.0)
        codes = canonical_codes(lengths)
        strings = [format(int(c), f"0{int(n)}b") for c, n in zip(codes, lengths) if n]
        for a, b in itertools.permutations(strings, 2):
            assert not b.startswith(a)
        assert strings == [format(int(c), f"0{int(n)}b") for c, n in zip(codes, lengths) if n]

    def test_code_lengths_are_huffman_lengths_of_present_symbols(self):
        counts = np.array([5, 0, 1, 3, 0, 9])
        lengths = code_lengths(counts)
        assert (lengths[counts == 0] == 0).all()
        present = counts > 0
        assert counts[present] @ lengths[present] == optimal_cost(counts[present])

    @given(st.lists(st.integers(0, 40), max_size=300), st.integers(0, 2**32 - 1))
    def test_round_trip_matches_reference(self, symbols, salt):
        symbols = np.asarray(symbols, dtype=np.int64)
        counts = np.bincount(symbols, minlength=41) if symbols.size else np.ones(41)
        lengths = code_lengths(counts)
        data, n_bits = huffman_encode(symbols, lengths)
        want = reference_bits(symbols, lengths)
        assert n_bits == len(want) == int(lengths[symbols].sum())
        got = "".join(map(str, np.unpackbits(data)[:n_bits])) if n_bits else ""
        assert got == want
        assert data.size == (n_bits + 7) // 8
        np.testing.assert_array_equal(huffman_decode(data, n_bits, lengths, symbols.size), symbols)

    def test_one_symbol_and_empty(self):
        lengths = code_lengths([0, 0, 4])
        assert lengths.tolist() == [0, 0, 1]
        data, n_bits = huffman_encode([2, 2, 2, 2], lengths)
        assert n_bits == 4
        assert huffman_decode(data, n_bits, lengths, 4).tolist() == [2, 2, 2, 2]
        data, n_bits = huffman_encode([], lengths)
        assert (data.size, n_bits) == (0, 0)
        assert huffman_decode(data, 0, lengths, 0).size == 0

    def test_huffman_stream_is_optimal_length(self, rng):
        symbols = rng.zipf(1.4, 5000) % 100
        counts = np.bincount(symbols, minlength=100)
        _, n_bits = huffman_encode(symbols, code_lengths(counts))
        present = counts > 0
        assert n_bits == huffman_tree(counts[present]).expected_length(counts[present]) * 5000

    def test_corrupt_streams_are_refused(self, rng):
        symbols = rng.integers(0, 5, 200)
        lengths = code_lengths(np.bincount(symbols, minlength=5))
        data, n_bits = huffman_encode(symbols, lengths)
        with pytest.raises(ValueError, match="corrupt stream"):
            huffman_decode(data[:-1], n_bits, lengths, 200)      # truncated bytes
        with pytest.raises(ValueError, match="corrupt stream"):
            huffman_decode(data, n_bits, lengths, 201)           # runs out of bits
        with pytest.raises(ValueError, match="corrupt stream"):
            huffman_decode(data, n_bits, lengths, 199)           # bits left over
        with pytest.raises(ValueError, match="corrupt stream"):
            huffman_decode(data, n_bits - 1, lengths, 200)       # last code cut off

    def test_incomplete_code_pattern_is_refused(self):
        lengths = np.array([1, 2, 0])      # codes '0' and '10'; '11' is no code
        data = np.packbits(np.array([0, 1, 1, 0], dtype=np.uint8))
        with pytest.raises(ValueError, match="is no code"):
            huffman_decode(data, 4, lengths, 2)

    def test_bad_tables_and_symbols(self):
        with pytest.raises(ValueError, match="Kraft"):
            huffman_encode([0], [1, 1, 1])
        with pytest.raises(ValueError, match="lengths must lie"):
            canonical_codes([1, -1])
        with pytest.raises(TypeError, match="lengths must hold integers"):
            canonical_codes([1.0, 1.0])
        with pytest.raises(ValueError, match="has no code"):
            huffman_encode([1], [1, 0, 1])
        with pytest.raises(IndexError, match="symbols"):
            huffman_encode([3], [1, 1])
        with pytest.raises(TypeError, match="data must"):
            huffman_decode(np.zeros(1, dtype=np.int64), 8, [1, 1], 8)

    def test_deepest_codes_round_trip(self):
        # Lengths 1, 2, ..., 56, 57, 57: the deepest tree the coder takes (a Fibonacci-like
        # count sequence gives such a comb).
        lengths = np.append(np.arange(1, 58), 57)
        codes = canonical_codes(lengths)
        assert codes[-1] == 2**57 - 1 and codes[0] == 0
        symbols = np.array([57, 0, 56, 30, 57, 1])
        data, n_bits = huffman_encode(symbols, lengths)
        assert n_bits == 57 + 1 + 57 + 31 + 57 + 2
        np.testing.assert_array_equal(huffman_decode(data, n_bits, lengths, 6), symbols)
        with pytest.raises(ValueError, match="lengths must lie"):
            canonical_codes(np.append(np.arange(1, 59), 58))

    @given(st.binary(max_size=40), st.integers(0, 400), st.integers(0, 100),
           st.lists(st.integers(0, 6), min_size=1, max_size=12))
    def test_garbage_decodes_or_raises(self, blob, n_bits, count, lengths):
        data = np.frombuffer(blob, dtype=np.uint8)
        try:
            out = huffman_decode(data, n_bits, lengths, count)
        except ValueError:
            return
        assert out.shape == (count,) and (out >= 0).all() and (out < len(lengths)).all()
        assert (np.asarray(lengths)[out] > 0).all()

    def test_chunk_boundaries(self, rng, monkeypatch):
        import dlkernels.huffman as module

        monkeypatch.setattr(module, "_CHUNK", 37)   # codes straddle every chunk edge
        symbols = rng.zipf(1.3, 3000) % 50
        lengths = code_lengths(np.bincount(symbols, minlength=50))
        data, n_bits = huffman_encode(symbols, lengths)
        assert "".join(map(str, np.unpackbits(data)[:n_bits])) == reference_bits(symbols, lengths)
        np.testing.assert_array_equal(huffman_decode(data, n_bits, lengths, 3000), symbols)


class TestLengthLimited:
    """code_lengths never returns a length the coder refuses (issue 13)."""

    @given(st.lists(st.integers(1, 50), min_size=2, max_size=6), st.integers(1, 4))
    def test_package_merge_is_optimal(self, counts, max_length):
        counts = np.asarray(counts)
        if 2**max_length < counts.size:
            with pytest.raises(ValueError, match="max_length"):
                code_lengths(counts, max_length=max_length)
            return
        lengths = code_lengths(counts, max_length=max_length)
        assert lengths.max() <= max_length
        assert sum(Fraction(1, 2**int(n)) for n in lengths) <= 1
        best = min(counts @ np.array(c) for c in itertools.product(range(1, max_length + 1),
                                                                    repeat=counts.size)
                   if sum(Fraction(1, 2**n) for n in c) <= 1)
        assert counts @ lengths == best

    def test_fibonacci_counts_stay_codable(self):
        fib = [1, 1]
        while len(fib) < 80:
            fib.append(fib[-1] + fib[-2])
        counts = np.array(fib, dtype=float)
        assert huffman_tree(counts).max_length > MAX_CODE_LENGTH    # unlimited: too deep
        lengths = code_lengths(counts)
        assert lengths.max() == MAX_CODE_LENGTH
        symbols = np.arange(80)
        data, n_bits = huffman_encode(symbols, lengths)
        np.testing.assert_array_equal(huffman_decode(data, n_bits, lengths, 80), symbols)

    def test_count_beyond_the_bits_is_refused_before_allocating(self):
        import time
        import tracemalloc

        tracemalloc.start()
        started = time.perf_counter()
        with pytest.raises(ValueError, match="cannot hold"):
            huffman_decode(np.zeros(1, np.uint8), 8, [1, 1], 2**28)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert time.perf_counter() - started < 0.5 and peak < 2**20


def test_decoding_is_compiled_fast(rng):
    """About 1.2 us per symbol in the former Python loop; the compiled one is far below."""
    symbols = rng.zipf(1.3, 200_000) % 60
    lengths = code_lengths(np.bincount(symbols, minlength=60))
    data, n_bits = huffman_encode(symbols, lengths)
    best = min(_timed(lambda: huffman_decode(data, n_bits, lengths, symbols.size)) for _ in range(3))
    np.testing.assert_array_equal(huffman_decode(data, n_bits, lengths, symbols.size), symbols)
    assert best / symbols.size < 0.3e-6, best


def _timed(fn):
    import time

    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
