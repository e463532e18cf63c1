"""One Huffman tree and code builder, shared by ``nn``, ``embed`` and ``compress``.

A :class:`CodeTree` is a full binary tree over ``n`` symbols. Its arrays are what
the users need directly: hierarchical softmax gathers the ``paths`` and ``bits``
of a batch of targets; word2vec walks them per word; a compression report sums
``lengths`` weighted by counts. Pure numpy, no torch.

Node numbering
    Symbols (leaves) are ``0 .. n-1``. The ``n - 1`` internal nodes are numbered
    ``0 .. n-2`` in breadth-first order from the root (internal node 0), left
    child before right child, so every level of the tree is a contiguous range
    of internal nodes and a parent always precedes its children.
    ``children[k]`` holds the two children of internal node ``k`` as *node ids*:
    an id ``< n`` is a leaf (that symbol), an id ``>= n`` is internal node
    ``id - n``.

Codes
    Going to the left child is bit 0, to the right child bit 1. The code of a
    symbol is the sequence of bits from the root to its leaf; ``paths[s, j]`` is
    the internal node where the ``j``-th bit of symbol ``s`` is decided.

Tie-breaking (deterministic)
    Counts are sorted stably (equal counts keep their symbol order) and merged
    with the two-queue method: when a leaf and a merged node weigh the same,
    the leaf is taken first, which among the optimal trees gives one with the
    smallest longest code. The first node taken becomes the left child.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from dlkernels._lib._entropy import ERR_END, ERR_NO_CODE, huffman_decode_canonical
from dlkernels._lib.array_types import ArrayLike, IntArray, NDArray, Tensor
from dlkernels._lib.validation import as_float_array, as_index_array, check_count

__all__ = ["CodeTree", "huffman_tree", "balanced_tree", "code_lengths", "canonical_codes",
           "huffman_encode", "huffman_decode"]

# Longest code the bit-packed coder handles (a code, shifted into place, must fit
# in an int64); code_lengths limits its codes to it.
MAX_CODE_LENGTH = 57
_CHUNK = 1 << 20  # symbols handled per vectorised encoding pass


class CodeTree:
    """A full binary prefix-code tree over ``n_symbols`` symbols.

    Build one with :func:`huffman_tree` or :func:`balanced_tree`.

    Attributes
    ----------
    n_symbols : int
    children : numpy.ndarray of int64, shape (n_symbols - 1, 2)
        Child node ids of each internal node (breadth-first, root 0); ids below
        ``n_symbols`` are leaves.
    parent : numpy.ndarray of int64, shape (2 * n_symbols - 1,)
        Internal-node parent of each node id (leaves first, then internal nodes
        at ``n_symbols + k``); -1 for the root.
    depth : numpy.ndarray of int64, shape (n_symbols - 1,)
        Depth of each internal node (the root is 0).
    lengths : numpy.ndarray of int64, shape (n_symbols,)
        Code length of each symbol (its leaf's depth).
    paths : numpy.ndarray of int64, shape (n_symbols, max_length)
        Internal nodes from the root to each symbol's leaf, padded with -1.
    bits : numpy.ndarray of int8, shape (n_symbols, max_length)
        Branch taken at each of those nodes (0 left, 1 right), padded with -1.

    Notes
    -----
    ``paths`` and ``bits`` take ``n_symbols * max_length`` entries. Huffman trees
    of real frequency data are shallow (about 25 levels for a 10**5-word Zipf
    vocabulary), but adversarial counts (a Fibonacci sequence) can make
    ``max_length`` reach about 1,500 for float64 counts.
    """

    n_symbols: int
    children: IntArray
    parent: IntArray
    depth: IntArray
    lengths: IntArray
    paths: IntArray
    bits: NDArray[np.int8]

    def __init__(self, children: ArrayLike, n_symbols: int) -> None:
        self.n_symbols = int(n_symbols)
        self.children = np.ascontiguousarray(children, dtype=np.int64).reshape(-1, 2)
        self._derive()

    def _derive(self) -> None:
        n = self.n_symbols
        n_internal = n - 1
        parent = np.full(2 * n - 1, -1, dtype=np.int64)
        branch = np.zeros(2 * n - 1, dtype=np.int8)
        if n_internal:
            parent[self.children[:, 0]] = np.arange(n_internal)
            parent[self.children[:, 1]] = np.arange(n_internal)
            branch[self.children[:, 1]] = 1
        self.parent = parent
        # Breadth-first numbering: a parent precedes its children, so one pass in
        # order fills every depth.
        depth = np.zeros(n_internal, dtype=np.int64)
        internal_parent = parent[n:]
        for level_start, level_stop in self._levels(internal_parent):
            depth[level_start:level_stop] = depth[internal_parent[level_start:level_stop]] + 1
        self.depth = depth
        lengths = depth[parent[:n]] + 1 if n_internal else np.zeros(n, dtype=np.int64)
        self.lengths = lengths.astype(np.int64)
        max_length = int(lengths.max()) if n else 0
        paths = np.full((n, max_length), -1, dtype=np.int64)
        bits = np.full((n, max_length), -1, dtype=np.int8)
        # Walk up from every leaf at once, filling each path from its end.
        node = np.arange(n)
        pos = self.lengths - 1
        active = np.flatnonzero(pos >= 0)
        while active.size:
            up = parent[node[active]]
            paths[active, pos[active]] = up
            bits[active, pos[active]] = branch[node[active]]
            node[active] = up + n
            pos[active] -= 1
            active = active[pos[active] >= 0]
        self.paths, self.bits = paths, bits

    @staticmethod
    def _levels(internal_parent: IntArray) -> Iterator[tuple[int, int]]:
        """(start, stop) of each level after the root, from breadth-first parents."""
        start = 1
        size = internal_parent.size
        while start < size:
            # Nodes of the next level are those whose parent lies before `start`.
            stop = int(np.searchsorted(internal_parent, start, side="left"))
            stop = max(stop, start + 1)
            yield start, stop
            start = stop

    @property
    def n_internal(self) -> int:
        """Number of internal nodes, ``n_symbols - 1``."""
        return self.n_symbols - 1

    @property
    def max_length(self) -> int:
        """The longest code length."""
        return self.paths.shape[1]

    def code(self, symbol: int) -> str:
        """The code of ``symbol`` as a string of ``'0'`` and ``'1'``."""
        symbol = check_count(symbol, "symbol")
        if symbol >= self.n_symbols:
            raise IndexError(f"symbol must lie in [0, {self.n_symbols}), got {symbol}")
        return "".join(map(str, self.bits[symbol, : self.lengths[symbol]].tolist()))

    def codes(self) -> list[str]:
        """Every symbol's code, in symbol order."""
        return [self.code(s) for s in range(self.n_symbols)]

    def expected_length(self, counts: ArrayLike | Tensor) -> float:
        """Mean code length under ``counts`` (``sum(counts * lengths) / sum(counts)``)."""
        counts = as_float_array(counts, "counts", nonnegative=True)
        if counts.shape != (self.n_symbols,):
            raise ValueError(f"counts must have shape ({self.n_symbols},), got {counts.shape}")
        total = counts.sum()
        if not total > 0:
            raise ValueError("counts must have at least one positive value, got all zeros")
        return float(counts @ self.lengths / total)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, CodeTree) and other.n_symbols == self.n_symbols
                and np.array_equal(other.children, self.children))

    def __repr__(self) -> str:
        return f"CodeTree(n_symbols={self.n_symbols}, max_length={self.max_length})"

    def __reduce__(self) -> tuple[type[CodeTree], tuple[IntArray, int]]:
        return (CodeTree, (self.children, self.n_symbols))


def huffman_tree(counts: ArrayLike | Tensor) -> CodeTree:
    """The Huffman tree of ``counts``: an optimal prefix code (minimum expected length).

    Parameters
    ----------
    counts : array-like or torch.Tensor, shape (n,)
        Frequency of each symbol; finite and non-negative (zeros are allowed and
        get the longest codes). ``n >= 1``; a single symbol has the empty code.

    Returns
    -------
    CodeTree

    Raises
    ------
    ValueError
        If ``counts`` is empty, not 1-dimensional, or has a negative or
        non-finite value.

    Notes
    -----
    Sorting costs O(n log n); the merges then take O(n) with the two-queue
    method (leaves in sorted order, merged nodes in the order they are made,
    which is also sorted). Ties are broken deterministically: see the module
    documentation.

    Examples
    --------
    >>> from dlkernels.huffman import huffman_tree
    >>> tree = huffman_tree([5, 1, 1, 3])
    >>> tree.codes()
    ['0', '100', '101', '11']
    >>> tree.lengths.tolist()
    [1, 3, 3, 2]
    """
    counts = as_float_array(counts, "counts", nonnegative=True)
    n = counts.size
    with np.errstate(over="ignore"):
        if not np.isfinite(counts.sum()):
            # Merged weights would overflow to inf and tie with the sentinels:
            # rescale (order-preserving) so every sum stays finite.
            counts = counts / counts.max()
    order = np.argsort(counts, kind="stable")
    inf = float("inf")
    # Two queues: leaves (sorted) and merged nodes (made in non-decreasing weight),
    # each ending in an infinite sentinel so neither needs a bounds check.
    # Merged node m is referred to as ~m (= -(m + 1)) until it is renumbered.
    leaf_weight = counts[order].tolist() + [inf]
    leaf_id = order.tolist()
    merged_weight = [inf] * n
    left = [0] * (n - 1)
    right = [0] * (n - 1)
    i = j = 0
    for m in range(n - 1):
        if leaf_weight[i] <= merged_weight[j]:
            wa, a = leaf_weight[i], leaf_id[i]
            i += 1
        else:
            wa, a = merged_weight[j], ~j
            j += 1
        if leaf_weight[i] <= merged_weight[j]:
            wb, b = leaf_weight[i], leaf_id[i]
            i += 1
        else:
            wb, b = merged_weight[j], ~j
            j += 1
        merged_weight[m] = wa + wb
        left[m] = a
        right[m] = b
    return _from_merges(left, right, n)


def _from_merges(left: list[int], right: list[int], n: int) -> CodeTree:
    """Renumber merge-order internal nodes breadth-first from the root (the last merge)."""
    if n == 1:
        return CodeTree(np.zeros((0, 2), dtype=np.int64), 1)
    order = [n - 2]  # breadth-first list of merge indices, root first
    append = order.append
    for m in order:  # grows while it is walked: a queue without pops
        if left[m] < 0:
            append(~left[m])
        if right[m] < 0:
            append(~right[m])
    raw = np.array([left, right], dtype=np.int64).T  # leaves >= 0, merged ~m
    new_id = np.empty(n - 1, dtype=np.int64)
    new_id[np.asarray(order)] = np.arange(n - 1)
    children = np.where(raw < 0, new_id[np.maximum(-raw - 1, 0)] + n, raw)
    return CodeTree(children[np.asarray(order)], n)


def balanced_tree(n_symbols: int) -> CodeTree:
    """A complete binary tree over ``n_symbols`` symbols: every code has length
    ``floor(log2(n))`` or ``ceil(log2(n))``.

    It is the Huffman tree of equal counts (the optimal code for a uniform
    distribution), built with the same tie-breaking.

    Parameters
    ----------
    n_symbols : int
        At least 1.

    Returns
    -------
    CodeTree

    Examples
    --------
    >>> from dlkernels.huffman import balanced_tree
    >>> balanced_tree(5).lengths.tolist()
    [3, 3, 2, 2, 2]
    """
    n = check_count(n_symbols, "n_symbols")
    if n < 1:
        raise ValueError(f"n_symbols must be at least 1, got {n}")
    return huffman_tree(np.ones(n))


# -- bit-packed coding ------------------------------------------------------------
# Canonical codes: symbols sorted by (length, symbol) get consecutive code values,
# so the code lengths alone (one small int per symbol) define the code. That is
# the table a file stores; :func:`canonical_codes` rebuilds the codes from it.


def code_lengths(counts: ArrayLike, *, max_length: int = MAX_CODE_LENGTH) -> IntArray:
    """Huffman code length of each symbol of ``counts``; 0 for symbols that never occur.

    Unlike ``huffman_tree(counts).lengths``, absent symbols get no code at all,
    which keeps the codes of the others short. A single present symbol gets
    length 1, so that a stream names its symbol (a caller that stores the
    symbol elsewhere can skip such a stream altogether).

    Parameters
    ----------
    counts : array-like, shape (n,)
        Finite non-negative frequencies; ``n >= 1``.
    max_length : int, default 57
        Longest code allowed, in 1..57 (57 is the most :func:`huffman_encode`
        and :func:`huffman_decode` take). When the Huffman code is deeper
        (skewed counts, e.g. a Fibonacci sequence), the optimal code among
        those no longer than ``max_length`` is returned instead (package-merge,
        Larmore and Hirschberg 1990).

    Returns
    -------
    numpy.ndarray of int64, shape (n,)

    Raises
    ------
    ValueError
        If ``counts`` is invalid, or ``max_length`` is out of range or too
        short for the number of present symbols (``2**max_length`` < that number).

    Examples
    --------
    >>> from dlkernels.huffman import code_lengths
    >>> code_lengths([5, 0, 1, 3]).tolist()
    [1, 0, 2, 2]
    >>> code_lengths([0, 7, 0]).tolist()
    [0, 1, 0]
    >>> code_lengths([1, 1, 2, 4, 8], max_length=3).tolist()
    [3, 3, 3, 3, 1]
    """
    counts = as_float_array(counts, "counts", nonnegative=True)
    max_length = check_count(max_length, "max_length", minimum=1, maximum=MAX_CODE_LENGTH)
    lengths = np.zeros(counts.size, dtype=np.int64)
    present = np.flatnonzero(counts > 0)
    if present.size > 2**min(max_length, 62):
        raise ValueError(f"max_length={max_length} is too short for {present.size} symbols")
    if present.size == 1:
        lengths[present] = 1
    elif present.size > 1:
        found = huffman_tree(counts[present]).lengths
        if found.max() > max_length:
            found = _package_merge(counts[present], max_length)
        lengths[present] = found
    return lengths


def _package_merge(weights: NDArray[np.float64], max_length: int) -> IntArray:
    """Optimal code lengths of at most ``max_length`` bits (package-merge).

    Each symbol is a coin of face value ``2**-l`` for l = 1..max_length; the
    cheapest set of coins worth ``n - 1`` gives the lengths: a symbol's length
    is the number of its coins chosen. Packaging pairs coins of one level into
    one of the level above; at each level the cheapest items are kept. Only
    which items are leaves is needed to count the coins, so each level stores
    its merged list as (is_leaf, symbol) in order.
    """
    n = weights.size
    order = np.argsort(weights, kind="stable")
    leaves = weights[order]
    levels = []
    packages = np.zeros(0)
    for _ in range(max_length):     # from the deepest level up
        merged_w = np.concatenate([leaves, packages])
        is_leaf = np.concatenate([np.ones(n, bool), np.zeros(packages.size, bool)])
        ids = np.concatenate([np.arange(n), np.full(packages.size, -1)])
        rank = np.argsort(merged_w, kind="stable")  # leaves before packages of equal weight
        merged_w, is_leaf, ids = merged_w[rank], is_leaf[rank], ids[rank]
        levels.append((is_leaf, ids))
        pairs = merged_w.size // 2
        packages = merged_w[:2 * pairs].reshape(pairs, 2).sum(axis=1)
    lengths = np.zeros(n, dtype=np.int64)
    take = 2 * n - 2  # items chosen at the top level (face value 1/2 each)
    for is_leaf, ids in reversed(levels):
        chosen = is_leaf[:take]
        lengths[ids[:take][chosen]] += 1
        take = 2 * int(take - chosen.sum())   # each chosen package opens into two items
    out = np.empty(n, dtype=np.int64)
    out[order] = lengths
    return out


def _check_lengths(lengths: ArrayLike) -> IntArray:
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or lengths.size == 0:
        raise ValueError(f"lengths must be a non-empty 1-dimensional array, got shape {lengths.shape}")
    if lengths.dtype.kind not in "iu":
        raise TypeError(f"lengths must hold integers, got dtype {lengths.dtype}")
    lengths = lengths.astype(np.int64)
    if lengths.min() < 0 or lengths.max() > MAX_CODE_LENGTH:
        bad = lengths[(lengths < 0) | (lengths > MAX_CODE_LENGTH)][0]
        raise ValueError(f"lengths must lie in [0, {MAX_CODE_LENGTH}], got {bad}")
    used = lengths[lengths > 0]
    if used.size:
        # Kraft's inequality, in exact integers: a prefix code exists iff it holds.
        top = int(used.max())
        if int(np.sum(np.left_shift(1, top - used, dtype=np.int64))) > (1 << top):
            raise ValueError("lengths violate Kraft's inequality: no prefix code has them")
    return lengths


def canonical_codes(lengths: ArrayLike) -> IntArray:
    """The canonical prefix code with the given code lengths.

    Symbols are ordered by (length, symbol) and take consecutive code values,
    each shifted left when the length grows (DEFLATE's rule).

    Parameters
    ----------
    lengths : array-like of int, shape (n,)
        Code length of each symbol, 0 for a symbol without a code; they must
        satisfy Kraft's inequality.

    Returns
    -------
    numpy.ndarray of int64, shape (n,)
        The code of each symbol as an integer whose ``lengths[s]`` low bits,
        most significant first, are the code (0 where the length is 0).

    Raises
    ------
    ValueError
        If a length is negative or above 57, or no prefix code has these lengths.

    Examples
    --------
    >>> from dlkernels.huffman import canonical_codes
    >>> canonical_codes([1, 0, 2, 2]).tolist()   # '0', -, '10', '11'
    [0, 0, 2, 3]
    """
    lengths = _check_lengths(lengths)
    return _canonical(lengths)


def _canonical(lengths: IntArray) -> IntArray:
    codes = np.zeros(lengths.size, dtype=np.int64)
    order = np.lexsort((np.arange(lengths.size), lengths))
    order = order[lengths[order] > 0]
    if order.size:
        sorted_len = lengths[order]
        # code[i] = (code[i-1] + 1) << (len[i] - len[i-1]); unrolled as a sum of
        # per-step increments scaled to the final length of each symbol.
        code = 0
        prev = int(sorted_len[0])
        out = np.empty(order.size, dtype=np.int64)
        for i, length in enumerate(sorted_len.tolist()):
            if i:
                code = (code + 1) << (length - prev)
            out[i] = code
            prev = length
        codes[order] = out
    return codes


def huffman_encode(symbols: ArrayLike, lengths: ArrayLike) -> tuple[NDArray[np.uint8], int]:
    """Bit-pack ``symbols`` with the canonical code of ``lengths``.

    Parameters
    ----------
    symbols : array-like of int, shape (m,)
        Symbols in ``[0, n)``; each must have a code (length > 0).
    lengths : array-like of int, shape (n,)
        Code lengths, e.g. from :func:`code_lengths`.

    Returns
    -------
    data : numpy.ndarray of uint8
        The codes, concatenated most significant bit first and packed into
        bytes (the last byte padded with zero bits).
    n_bits : int
        The exact number of bits used.

    Raises
    ------
    ValueError
        If a symbol has no code, or ``lengths`` are not those of a prefix code.
    IndexError
        If a symbol lies outside ``[0, n)``.

    Examples
    --------
    >>> from dlkernels.huffman import code_lengths, huffman_decode, huffman_encode
    >>> x = [0, 0, 3, 2, 0]
    >>> lengths = code_lengths([3, 0, 1, 1])
    >>> data, n_bits = huffman_encode(x, lengths)
    >>> n_bits, huffman_decode(data, n_bits, lengths, len(x)).tolist()
    (7, [0, 0, 3, 2, 0])
    """
    lengths = _check_lengths(lengths)
    symbols = as_index_array(symbols, "symbols", lengths.size)
    if symbols.size == 0:
        return np.zeros(0, dtype=np.uint8), 0
    sym_len = lengths[symbols]
    if not sym_len.all():
        bad = int(symbols[sym_len == 0][0])
        raise ValueError(f"symbols holds {bad}, which has no code (length 0)")
    table = _canonical(lengths)
    width = int(sym_len.max())
    shifts = (width - 1 - np.arange(width, dtype=np.int64))
    pieces = []
    # In chunks: the (symbols, width) bit matrix of a whole large layer would
    # take 8 * width bytes per symbol at once.
    for lo in range(0, symbols.size, _CHUNK):
        part_len = sym_len[lo:lo + _CHUNK]
        codes = table[symbols[lo:lo + _CHUNK]]
        # bit j of each code, left-aligned to `width`; keep the first len bits of each row.
        bits = ((codes << (width - part_len))[:, None] >> shifts) & 1
        pieces.append(bits[np.arange(width) < part_len[:, None]].astype(np.uint8))
    flat = np.concatenate(pieces)
    return np.packbits(flat), int(flat.size)


def huffman_decode(data: ArrayLike, n_bits: int, lengths: ArrayLike, count: int) -> IntArray:
    """Decode ``count`` symbols from a stream written by :func:`huffman_encode`.

    A compiled loop reads the stream bit by bit (the codes of one length are
    consecutive integers in a canonical code, so each bit costs one comparison).

    Parameters
    ----------
    data : array-like of uint8
        Packed bits.
    n_bits : int
        Number of meaningful bits in ``data``.
    lengths : array-like of int, shape (n,)
        The code lengths used to encode.
    count : int
        Number of symbols to decode.

    Returns
    -------
    numpy.ndarray of int64, shape (count,)

    Raises
    ------
    ValueError
        If the stream is corrupt: shorter than ``n_bits``, a bit pattern that is
        no code, a code cut off at the end, or bits left over after ``count``
        symbols.
    """
    lengths = _check_lengths(lengths)
    n_bits = check_count(n_bits, "n_bits")
    count = check_count(count, "count")
    data = np.asarray(data)
    if data.dtype != np.uint8 or data.ndim != 1:
        raise TypeError(f"data must be a 1-dimensional uint8 array, got {data.dtype} {data.shape}")
    if data.size * 8 < n_bits or data.size > (n_bits + 7) // 8:
        raise ValueError(f"corrupt stream: {data.size} bytes do not hold exactly {n_bits} bits")
    used = np.flatnonzero(lengths)
    if count == 0 or used.size == 0:
        if count:
            raise ValueError(f"lengths give no symbol a code, so no {count} symbols can be decoded")
        if n_bits:
            raise ValueError(f"corrupt stream: {n_bits} bits left over after 0 symbols")
        return np.zeros(0, dtype=np.int64)
    shortest = int(lengths[used].min())
    if count > n_bits // shortest:
        # Checked before the output is allocated: every symbol takes at least `shortest` bits.
        raise ValueError(f"corrupt stream: {n_bits} bits cannot hold {count} symbols of "
                         f"at least {shortest} bits")
    # Canonical order: by (length, symbol); the decoder needs only the count of
    # codes of each length and the symbols in that order.
    order = used[np.lexsort((used, lengths[used]))]
    per_length = np.bincount(lengths[used], minlength=int(lengths.max()) + 1).astype(np.int64)
    out = np.empty(count, dtype=np.int64)
    status = huffman_decode_canonical(np.ascontiguousarray(data), n_bits, per_length, order, out)
    if status == ERR_END:
        raise ValueError(f"corrupt stream: it ends before the last of {count} symbols")
    if status == ERR_NO_CODE:
        raise ValueError("corrupt stream: a bit pattern is no code")
    if status != n_bits:
        raise ValueError(f"corrupt stream: {n_bits - status} bits left over after {count} symbols")
    return out
