"""The hash families of LSHIndex.

* :class:`TreeFamily` (``hashing="kmeans"``, the default): data-aware. Each table
  is a two-level k-means tree fitted on a sample of the data at the first
  :meth:`~LSHIndex.add`; a vector's code is its leaf (nearest coarse centre, then
  nearest fine centre within that cell), and a query probes the leaves whose
  centres are nearest to it. Vector quantizers as LSH functions: Paulevé, Jégou
  and Amsaleg, Pattern Recognition Letters 2010.
* :class:`RandomFamily` (``hashing="random"``): data-independent. SimHash for
  cosine (Charikar, STOC 2002), p-stable projections for l2 (Datar et al., SoCG
  2004), with query-directed multiprobe (Lv et al., VLDB 2007).

A family is immutable: fitting, or setting the automatic bucket width, returns a
new family, so that :meth:`LSHIndex.add` changes nothing until everything is
computed.
"""

from __future__ import annotations

import functools
import heapq
import math
import warnings

import numpy as np

from dlkernels.neighbors import _lsh_hash

# bucket_width="auto": this many times the median distance from a sample of the
# first batch to its AUTO_K-th nearest neighbour.
AUTO_SAMPLE, AUTO_K, AUTO_FACTOR = 256, 10, 3.0
# int64 bucket indices are clipped here (as in the kernel) before they are mixed.
CLIP = 2.0**62
# The 64-bit finaliser of dlkernels's SplitMix64 (dlkernels/_lib/_random.pxd), for torch.
MIX1, MIX2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
# k-means trees: n_bits="auto" gives about LEAF_SIZE vectors per leaf; the fit
# samples SAMPLE_PER_LEAF vectors per leaf (at most MAX_SAMPLE) and runs at most
# FIT_ITER Lloyd iterations per level.
LEAF_SIZE, SAMPLE_PER_LEAF, MAX_SAMPLE, FIT_ITER = 50, 10, 2**18, 10
# The coarse level is fitted on this many sample vectors per cell.
COARSE_PER_CELL = 40
# The principal directions come from this many vectors, evenly spaced; the trees
# work in the leading TREE_DIMS of them, and the sketches in as many as leave at
# most SKETCH_RESIDUAL of the variance out.
PCA_SAMPLE, TREE_DIMS, SKETCH_RESIDUAL = 20000, 64, 0.02
MIN_TREE_BITS, MAX_TREE_BITS = 2, 20
# Random families: template sets per table at most (2 * MAX_TEMPLATE + 8 of them).
MAX_TEMPLATE = 4096
CELLS_FACTOR = 2.0
# A tree fitted on n vectors is refitted (and the tables rebuilt) once the index
# holds REFIT_GROWTH times more: amortised, a constant cost per vector added.
REFIT_GROWTH = 8


def _signed(u: int) -> int:
    """A uint64 constant as the int64 with the same bits (torch has no uint64 arithmetic)."""
    return u - (1 << 64) if u >= 1 << 63 else u


def _mix64_torch(z):
    """dlkernels's 64-bit mixer on int64 tensors (logical shifts emulated by masking)."""
    import torch

    def shr(x, s):
        return (x >> s) & ((1 << (64 - s)) - 1)

    z = (z ^ shr(z, 30)) * torch.tensor(_signed(MIX1), dtype=torch.int64, device=z.device)
    z = (z ^ shr(z, 27)) * torch.tensor(_signed(MIX2), dtype=torch.int64, device=z.device)
    return z ^ shr(z, 31)


# -- random hyperplanes and p-stable projections --------------------------------------------

class RandomFamily:
    """SimHash (cosine) or p-stable (l2) functions, ``n_bits`` per table."""

    name = "random"

    def __init__(self, dim: int, l2: bool, planes, shifts, mult, width):
        self.dim, self.l2 = dim, l2
        self.planes = np.ascontiguousarray(planes, dtype=np.float64)
        self.shifts = np.ascontiguousarray(shifts, dtype=np.float64)
        self.mult = np.ascontiguousarray(mult, dtype=np.uint64)
        self.n_tables, self.n_bits = self.mult.shape
        self.width = width      # None: "auto", set by the first add

    @classmethod
    def draw(cls, dim: int, l2: bool, n_tables: int, n_bits: int, width, rng) -> RandomFamily:
        planes = rng.standard_normal((n_tables * n_bits, dim))
        if not l2:
            # Unit normals: a projection is then the signed distance to the
            # hyperplane, which is what multiprobe scores compare across tables.
            planes /= np.linalg.norm(planes, axis=1, keepdims=True)
        shifts = rng.random(n_tables * n_bits)
        mult = rng.integers(0, 2**64, size=(n_tables, n_bits), dtype=np.uint64, endpoint=False)
        mult |= np.uint64(1)
        return cls(dim, l2, planes, shifts, mult, width)

    @property
    def ready(self) -> bool:
        return not self.l2 or self.width is not None

    def prepared(self, points: np.ndarray, n_threads: int) -> RandomFamily:
        """This family, with the automatic bucket width taken from ``points`` if unset."""
        if self.ready:
            return self
        return RandomFamily(self.dim, self.l2, self.planes, self.shifts, self.mult,
                            _auto_width(points))

    def sketch_basis(self) -> tuple:
        """Sketches of the coordinates themselves (of the unit vectors for cosine)."""
        return (np.zeros(self.dim, dtype=np.float32), np.zeros((0, self.dim), dtype=np.float32),
                not self.l2)

    def keys(self, points: np.ndarray, n_threads: int, store_keys: bool = True) -> np.ndarray:
        out = np.empty((points.shape[0], self.n_tables), dtype=np.uint64)
        _lsh_hash.random_keys(points, self.planes, self.shifts, self.width or 1.0, self.l2,
                              self.mult, store_keys, out, n_threads)
        return out

    def kernel_args(self, n_probes: int) -> tuple:
        per_table = min(-(-n_probes // self.n_tables), MAX_TEMPLATE)
        pos, off = _probe_template(self.n_bits, self.l2, per_table)
        return ("random", self.planes, self.shifts, self.width or 1.0, self.mult, pos, off,
                self.l2)

    def hashing_cost(self, n_probes: int) -> float:
        """Dot products of ``dim`` terms a query spends on hashing."""
        return float(self.n_tables * self.n_bits)

    def max_probes(self) -> int:
        return self.n_tables * MAX_TEMPLATE

    def hash_torch(self, x):
        import torch

        device = x.device
        planes = torch.from_numpy(self.planes).to(device)
        proj = x.to(torch.float64) @ planes.T
        m, L, K = x.shape[0], self.n_tables, self.n_bits
        if not self.l2:
            bits = (proj >= 0).to(torch.int64).reshape(m, L, K)
            powers = torch.ones(K, dtype=torch.int64, device=device) << torch.arange(
                K, dtype=torch.int64, device=device)
            return (bits * powers).sum(dim=2)
        proj = proj / self.width + torch.from_numpy(self.shifts).to(device)
        slots = torch.floor(proj).clamp(-CLIP, CLIP).to(torch.int64).reshape(m, L, K)
        mult = torch.from_numpy(self.mult.view(np.int64)).to(device)
        # Integer products and sums wrap modulo 2**64, as the uint64 ones in C.
        return _mix64_torch((slots * mult).sum(dim=2))


@functools.lru_cache(maxsize=64)
def _probe_template(n_bits: int, l2: bool, n_probes: int) -> tuple[np.ndarray, np.ndarray]:
    """The perturbation sets a query scores in each table, as (positions, offsets).

    Lv et al.'s shift/expand heap over the *expected* scores of the sorted
    single perturbations, keeping the first ``2 * n_probes + 8`` valid sets
    (``n_probes`` per table, on average).
    L2: position ``i < K`` is the i-th nearest boundary, expected at distance
    ``(i + 1) / (2 (K + 1))`` of a slot, and ``2K - 1 - i`` the opposite step of
    the same component; a set holding both is invalid. Cosine: the i-th
    smallest of K half-normal projections, at the matching quantile.
    """
    want = 2 * n_probes + 8 if n_probes > 0 else 0
    K = n_bits
    if l2:
        P = 2 * K
        near = (np.arange(K) + 1) / (2 * (K + 1))
        expected = np.concatenate([near ** 2, ((1 - near) ** 2)[::-1]])
    else:
        from statistics import NormalDist

        P = K
        expected = np.array([NormalDist().inv_cdf(0.5 + 0.5 * (i + 1) / (K + 1)) ** 2
                             for i in range(K)])
    sets: list[tuple[int, ...]] = []
    heap = [(float(expected[0]), (0,))] if want else []
    while heap and len(sets) < want:
        score, members = heapq.heappop(heap)
        if not (l2 and any(P - 1 - i in members for i in members)):
            sets.append(members)
        top = members[-1]
        if top + 1 < P:
            heapq.heappush(heap, (score + expected[top + 1], members + (top + 1,)))
            heapq.heappush(heap, (score - expected[top] + expected[top + 1],
                                  members[:-1] + (top + 1,)))
    offsets = np.zeros(len(sets) + 1, dtype=np.int32)
    offsets[1:] = np.cumsum([len(m) for m in sets])
    positions = np.array([i for m in sets for i in m], dtype=np.int32)
    return (positions if positions.size else np.zeros(1, dtype=np.int32)), offsets


def _auto_width(points: np.ndarray) -> float:
    """``AUTO_FACTOR`` times the median distance of a sample to its ``AUTO_K``-th neighbour."""
    n = points.shape[0]
    x = points.astype(np.float64)
    if n >= 2:
        sample = x[np.linspace(0, n - 1, min(n, AUTO_SAMPLE)).astype(np.int64)]
        k = min(AUTO_K, n - 1)
        sq_norms = np.einsum("ij,ij->i", x, x)
        kth = np.empty(sample.shape[0])
        for start in range(0, sample.shape[0], 64):
            s = sample[start:start + 64]
            d2 = sq_norms[None, :] - 2.0 * (s @ x.T) + np.einsum("ij,ij->i", s, s)[:, None]
            # k-th smallest excluding the point itself (its distance ~0 is the smallest).
            kth[start:start + 64] = np.partition(np.maximum(d2, 0.0), k, axis=1)[:, k]
        width = AUTO_FACTOR * float(np.median(np.sqrt(kth)))
        if width > 0 and np.isfinite(width):
            return width
        spread = float(np.sqrt(((x - x.mean(axis=0)) ** 2).sum(axis=1).mean()))
        if spread > 0 and np.isfinite(spread):
            return spread
    scale = float(np.abs(x).max())
    return scale if scale > 0 and np.isfinite(scale) else 1.0


# -- k-means trees --------------------------------------------------------------------------

def coarse_cells(n_bits: int) -> int:
    """Coarse cells of a tree of ``2**n_bits`` leaves (about the square root)."""
    return 1 << (n_bits // 2)


def tree_dims(dim: int) -> int:
    """Dimensions a tree works in: the leading principal directions of the data."""
    return min(dim, TREE_DIMS)


def _spread(n: int, size: int) -> np.ndarray:
    """``size`` row numbers evenly spread over ``n`` (all of them if fewer)."""
    return np.arange(n) if n <= size else np.linspace(0, n - 1, size).astype(np.int64)


def _principal(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, principal directions (rows, by decreasing variance) and their variances."""
    mean = x.mean(axis=0)
    centred = x - mean
    values, vectors = np.linalg.eigh(centred.T @ centred / max(x.shape[0] - 1, 1))
    values, basis = values[::-1], vectors[:, ::-1].T
    # The sign of an eigenvector is arbitrary: make the largest entry positive.
    signs = np.sign(basis[np.arange(basis.shape[0]), np.abs(basis).argmax(axis=1)])
    return mean.astype(np.float32), (basis * signs[:, None]).astype(np.float32), values


def sketch_dims(variances: np.ndarray) -> int:
    """Directions a sketch keeps: a multiple of 16 that leaves at most SKETCH_RESIDUAL
    of the variance out (all of them, unrotated, when that is not fewer)."""
    total = max(float(np.clip(variances, 0, None).sum()), np.finfo(np.float64).tiny)
    left = 1.0 - np.cumsum(np.clip(variances, 0, None)) / total
    dim = variances.shape[0]
    for s in range(16, dim, 16):
        if left[s - 1] <= SKETCH_RESIDUAL:
            return s
    return dim


def auto_tree_bits(n: int) -> int:
    """``n_bits`` for about ``LEAF_SIZE`` of ``n`` vectors per leaf."""
    bits = round(math.log2(max(n, 1) / LEAF_SIZE)) if n > LEAF_SIZE else 0
    return min(max(bits, MIN_TREE_BITS), MAX_TREE_BITS)


class TreeFamily:
    """``n_tables`` two-level k-means trees of ``2**n_bits`` leaves each.

    A tree has ``c1`` coarse cells; cell ``a`` owns the leaves
    ``offsets[a]:offsets[a + 1]``, as many as its share of the sample asks for,
    so that leaves hold about the same number of vectors however unevenly the
    coarse cells split the data.
    """

    name = "kmeans"

    def __init__(self, dim: int, l2: bool, n_tables: int, n_bits, seed: int, mean=None,
                 rotation=None, tree_dims: int = 0, sketch_dims: int = 0, coarse=None, fine=None,
                 offsets=None, fit_size: int = 0):
        self.dim, self.l2, self.n_tables, self.seed = dim, l2, n_tables, seed
        self.n_bits = n_bits    # None: "auto", chosen by the size of the data fitted on
        self.fit_size = fit_size
        self.mean = mean        # (dim,) float32, or None before the fit
        # (p, dim) float32: principal directions; the trees see the first tree_dims,
        # the sketches the first sketch_dims (0: the coordinates themselves).
        self.rotation = rotation
        self.tree_dims, self.sketch_dims = tree_dims, sketch_dims
        self.coarse = coarse    # (L, c1, tree_dims) float32
        self.fine = fine        # (L, n_leaves, tree_dims) float32
        self.offsets = offsets  # (L, c1 + 1) int64
        if coarse is not None:
            self.mean = np.ascontiguousarray(mean, dtype=np.float32)
            self.rotation = np.ascontiguousarray(rotation, dtype=np.float32)
            self.basis = np.ascontiguousarray(self.rotation[:tree_dims])
            self.coarse = np.ascontiguousarray(coarse, dtype=np.float32)
            self.fine = np.ascontiguousarray(fine, dtype=np.float32)
            self.offsets = np.ascontiguousarray(offsets, dtype=np.int64)
            self.coarse_norms = np.einsum("tcd,tcd->tc", self.coarse, self.coarse)
            self.fine_norms = np.einsum("tld,tld->tl", self.fine, self.fine)
            widths = np.sort(np.diff(self.offsets, axis=1), axis=1)[:, ::-1]
            self.widest = int(widths[:, 0].max())
            # Leaves in the p largest cells of a tree, at most over the trees.
            self._largest = np.cumsum(widths, axis=1).max(axis=0)

    @property
    def ready(self) -> bool:
        return self.coarse is not None

    @property
    def fitted_bits(self) -> int:
        return int(self.fine.shape[1]).bit_length() - 1

    def needs_refit(self, n_total: int) -> bool:
        return self.ready and n_total >= REFIT_GROWTH * max(self.fit_size, 1)

    def prepared(self, points: np.ndarray, n_threads: int) -> TreeFamily:
        """This family, fitted on ``points`` if it is not yet."""
        return self if self.ready else self.fitted(points, n_threads)

    def fitted(self, points: np.ndarray, n_threads: int) -> TreeFamily:
        """A family of new trees fitted on a sample of ``points``."""
        from dlkernels.cluster import kmeans

        n = points.shape[0]
        bits = self.n_bits if self.n_bits is not None else auto_tree_bits(n)
        n_leaves, c1 = 1 << bits, coarse_cells(bits)
        rng = np.random.default_rng(self.seed)
        size = min(n, max(SAMPLE_PER_LEAF * n_leaves, 4 * c1), MAX_SAMPLE)
        mean, rotation, variances = _principal(self._unit(points[_spread(n, PCA_SAMPLE)]))
        r, s = tree_dims(self.dim), sketch_dims(variances)
        s = 0 if s == self.dim else s
        rotation = rotation[:max(r, s)]
        basis = rotation[:r]
        coarse = np.empty((self.n_tables, c1, r), dtype=np.float32)
        fine = np.empty((self.n_tables, n_leaves, r), dtype=np.float32)
        offsets = np.empty((self.n_tables, c1 + 1), dtype=np.int64)
        with warnings.catch_warnings():
            # A few Lloyd iterations are all a hash function needs: stopping
            # before convergence is deliberate.
            warnings.simplefilter("ignore", UserWarning)
            for t in range(self.n_tables):
                rows = np.sort(rng.choice(n, size, replace=False)) if size < n else np.arange(n)
                sample = ((self._unit(points[rows]) - mean) @ basis.T).astype(np.float32)
                # The coarse centres need far fewer points than the leaves: a prefix
                # of the (random) sample; then every sample point goes to its cell.
                coarse[t] = _coarse(kmeans, sample[:COARSE_PER_CELL * c1], c1, rng, n_threads)
                labels = np.empty(size, dtype=np.int64)
                _lsh_hash.nearest(sample, coarse[t], np.einsum("cd,cd->c", coarse[t], coarse[t]),
                                  labels, n_threads)
                widths = _leaf_counts(np.bincount(labels, minlength=c1), n_leaves)
                offsets[t, 0] = 0
                np.cumsum(widths, out=offsets[t, 1:])
                fine[t] = _fit_leaves(sample, labels, coarse[t], offsets[t], rng, n_threads)
        return TreeFamily(self.dim, self.l2, self.n_tables, self.n_bits, self.seed, mean,
                          rotation, r, s, coarse, fine, offsets, n)

    def sketch_basis(self) -> tuple:
        """Sketches in the leading principal directions, less the mean (before the fit:
        of the coordinates themselves)."""
        if not self.ready:
            return (np.zeros(self.dim, dtype=np.float32),
                    np.zeros((0, self.dim), dtype=np.float32), not self.l2)
        return (self.mean, np.ascontiguousarray(self.rotation[:self.sketch_dims]), not self.l2)

    def _unit(self, points: np.ndarray) -> np.ndarray:
        """The vectors in float64, or for cosine the unit vectors."""
        x = points.astype(np.float64)
        if not self.l2:
            norms = np.linalg.norm(x, axis=1, keepdims=True)
            x = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
        return x

    def keys(self, points: np.ndarray, n_threads: int, store_keys: bool = True) -> np.ndarray:
        out = np.empty((points.shape[0], self.n_tables), dtype=np.uint64)
        _lsh_hash.tree_keys(points, self.mean, self.basis, self.coarse, self.coarse_norms,
                            self.fine, self.fine_norms, self.offsets, not self.l2, store_keys, out,
                            n_threads)
        return out

    def cells_scored(self, n_probes: int) -> int:
        """Coarse cells whose leaves a query scores, per table: enough for its share of
        the ``n_probes`` leaves to come from all sides of its home cell."""
        per_table = n_probes / self.n_tables
        return min(self.coarse.shape[1], math.ceil(math.sqrt(CELLS_FACTOR * per_table)) + 1)

    def kernel_args(self, n_probes: int) -> tuple:
        p1 = self.cells_scored(n_probes)
        return ("tree", self.mean, self.basis, self.coarse, self.coarse_norms, self.fine,
                self.fine_norms, self.offsets, not self.l2, p1, self.widest,
                int(self._largest[p1 - 1]))

    def hashing_cost(self, n_probes: int) -> float:
        c1, n_leaves, r = self.coarse.shape[1], self.fine.shape[1], self.basis.shape[0]
        leaves = self.n_tables * (c1 + self.cells_scored(n_probes) * n_leaves / c1)
        return float(r + leaves * r / self.dim)   # the projection, then centres of r terms

    def max_probes(self) -> int:
        return self.n_tables * (self.fine.shape[1] - 1)

    def hash_torch(self, x):
        import torch

        device = x.device
        x = x.to(torch.float64)
        if not self.l2:
            x = x / x.norm(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
        x = (x - torch.from_numpy(self.mean).to(device, torch.float64)) @ \
            torch.from_numpy(self.basis).to(device, torch.float64).T
        out = torch.empty((x.shape[0], self.n_tables), dtype=torch.int64, device=device)
        for t in range(self.n_tables):
            coarse = torch.from_numpy(self.coarse[t]).to(device, torch.float64)
            fine = torch.from_numpy(self.fine[t]).to(device, torch.float64)
            widths = torch.from_numpy(np.diff(self.offsets[t])).to(device)
            cell_of_leaf = torch.repeat_interleave(torch.arange(len(widths), device=device),
                                                   widths)
            for start in range(0, x.shape[0], 1024):
                xs = x[start:start + 1024]
                cell = (coarse.square().sum(1) - 2 * xs @ coarse.T).argmin(dim=1)
                scores = fine.square().sum(1) - 2 * xs @ fine.T
                # Only the leaves of each point's own cell compete (the first on ties).
                scores[cell_of_leaf[None, :] != cell[:, None]] = torch.inf
                out[start:start + 1024, t] = scores.argmin(dim=1)
        return out


def _leaf_counts(cell_sizes: np.ndarray, n_leaves: int) -> np.ndarray:
    """Leaves per cell in proportion to its sample points, each at least one, in all
    ``n_leaves`` (largest remainders first; ties to the lower cell)."""
    quota = n_leaves * cell_sizes / max(int(cell_sizes.sum()), 1)
    counts = np.maximum(np.floor(quota).astype(np.int64), 1)
    excess = int(counts.sum()) - n_leaves
    if excess < 0:
        order = np.argsort(-(quota - np.floor(quota)), kind="stable")
        counts[order[:-excess]] += 1
    while excess > 0:   # the minimum of one leaf overshot: take from the largest cells
        order = np.argsort(-counts, kind="stable")
        take = min(excess, int((counts > 1).sum()))
        counts[order[:take]] -= 1
        excess -= take
    return counts


def _coarse(kmeans, sample: np.ndarray, n: int, rng, n_threads: int) -> np.ndarray:
    """``n`` k-means centres of ``sample``; a sample of at most ``n`` points gives its
    own points (the spare centres repeat the last one and, being later ties, never
    win a vector)."""
    if sample.shape[0] <= n:
        centres = np.empty((n, sample.shape[1]), dtype=np.float32)
        centres[:sample.shape[0]] = sample
        centres[sample.shape[0]:] = sample[-1]
        return centres
    result = kmeans(sample, n, max_iter=FIT_ITER, rng=int(rng.integers(2**63)),
                    n_threads=n_threads)
    return np.asarray(result.centers, dtype=np.float32)


def _fit_leaves(sample: np.ndarray, cells: np.ndarray, coarse: np.ndarray, offsets: np.ndarray,
                rng, n_threads: int) -> np.ndarray:
    """The leaf centres of one tree: k-means within every coarse cell at once (cell
    ``a`` gets ``offsets[a + 1] - offsets[a]`` centres), ``FIT_ITER`` Lloyd steps
    from members drawn at random. A leaf left without points keeps its centre; a
    cell without points has all its leaves at its coarse centre."""
    n_leaves, dim = int(offsets[-1]), sample.shape[1]
    fine = np.repeat(coarse, np.diff(offsets), axis=0)
    order = np.argsort(cells, kind="stable")
    starts = np.searchsorted(cells[order], np.arange(coarse.shape[0] + 1))
    for a in range(coarse.shape[0]):
        members = order[starts[a]:starts[a + 1]]
        width = int(offsets[a + 1] - offsets[a])
        if members.size:
            picks = rng.choice(members.size, min(width, members.size), replace=False)
            fine[offsets[a]:offsets[a] + picks.size] = sample[members[np.sort(picks)]]
    leaves = np.empty(sample.shape[0], dtype=np.int64)
    previous = None
    for _ in range(FIT_ITER):
        _lsh_hash.nearest_in_cells(sample, cells, fine, np.einsum("ld,ld->l", fine, fine),
                                   offsets, leaves, n_threads)
        if previous is not None and np.array_equal(leaves, previous):
            break
        previous = leaves.copy()
        counts = np.bincount(leaves, minlength=n_leaves)
        sums = np.zeros((n_leaves, dim))
        _lsh_hash.sum_by_label(sample, leaves, sums)
        used = counts > 0
        fine[used] = (sums[used] / counts[used, None]).astype(np.float32)
    return fine
