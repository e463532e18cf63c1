"""LSHIndex files and pickles: one state dict, written as an ``.npz`` archive.

Format 2 (this version) records the hash family and the query settings; format
1 (dlkernels before the k-means trees) had random hash functions only and is
still read. Whatever the source, :func:`load_index` checks every value before
anything is built: hash functions as the constructor would draw or fit them,
vectors finite, ids distinct.
"""

from __future__ import annotations

import numpy as np

from dlkernels._lib.persist import read_archive, save_arrays
from dlkernels._lib.threads import check_n_threads
from dlkernels.neighbors._lsh_families import (
    MAX_TREE_BITS,
    MIN_TREE_BITS,
    RandomFamily,
    TreeFamily,
    coarse_cells,
)

VERSION = 2
COMMON = ["dim", "metric", "n_tables", "n_bits", "dtype", "vectors", "ids", "next_id"]
RANDOM = ["bucket_width", "planes", "shifts", "mult"]
TREE = ["seed", "fit_size"]
FITTED = ["mean", "rotation", "tree_dims", "sketch_dims", "coarse", "fine", "offsets"]
SETTINGS = ["hashing", "n_probes", "max_candidates"]


def state_of(index) -> dict:
    """Everything an index is made of, as numbers and arrays (the live rows only)."""
    store, family = index._store, index._family
    live = store.live_rows()
    state = {"dim": index._dim, "metric": index._metric, "hashing": family.name,
             "n_tables": family.n_tables, "dtype": index._dtype.name,
             "vectors": store.vectors[live], "ids": store.row_ids[live],
             "next_id": index._next_id, "n_probes": index._n_probes,
             "max_candidates": index._max_candidates}
    if family.name == "random":
        state.update(n_bits=family.n_bits, planes=family.planes, shifts=family.shifts,
                     mult=family.mult,
                     bucket_width=np.nan if family.width is None else family.width)
    else:
        state.update(n_bits=-1 if family.n_bits is None else family.n_bits, seed=family.seed,
                     fit_size=family.fit_size)
        if family.ready:
            state.update(mean=family.mean, rotation=family.rotation, tree_dims=family.tree_dims,
                         sketch_dims=family.sketch_dims, coarse=family.coarse, fine=family.fine,
                         offsets=family.offsets)
    return state


def save_index(index, path) -> None:
    save_arrays(path, "LSHIndex", version=VERSION, **state_of(index))


def read_index(cls, path):
    """The index in ``path`` (format 1 or 2), every member checked before use."""
    from dlkernels.neighbors.lsh import DEFAULT_PROBES, DTYPES, MAX_DIM, MAX_PROBES, MAX_TABLES

    with read_archive(path, "LSHIndex", versions=(1, VERSION)) as archive:
        hashing = "random" if archive.version == 1 else archive.scalar("hashing", str)
        if hashing == "random":
            required = COMMON + RANDOM + (SETTINGS if archive.version > 1 else [])
            archive.expect(required)
        elif hashing == "kmeans":
            archive.expect(COMMON + TREE + SETTINGS, optional=FITTED)
        else:
            raise ValueError(f"hashing is {hashing!r}, expected 'kmeans' or 'random'")
        dim = archive.scalar("dim", int, low=1, high=MAX_DIM)
        n_tables = archive.scalar("n_tables", int, low=1, high=MAX_TABLES)
        dtype = archive.scalar("dtype", str)
        if dtype not in DTYPES:
            raise ValueError(f"dtype is {dtype!r}, expected one of {tuple(DTYPES)}")
        state = {"dim": dim, "n_tables": n_tables, "dtype": dtype, "hashing": hashing,
                 "metric": archive.scalar("metric", str),
                 "vectors": archive.array("vectors", dtype, (None, dim)),
                 "next_id": archive.scalar("next_id", int, low=0),
                 "n_probes": DEFAULT_PROBES["random"], "max_candidates": 0}
        state["ids"] = archive.array("ids", "int64", (state["vectors"].shape[0],))
        if archive.version > 1:
            state["n_probes"] = archive.scalar("n_probes", int, low=0, high=MAX_PROBES)
            state["max_candidates"] = archive.scalar("max_candidates", int, low=0)
        if hashing == "random":
            n_bits = archive.scalar("n_bits", int, low=1, high=64)
            state.update(n_bits=n_bits,
                         bucket_width=archive.array("bucket_width", "float64", ()),
                         planes=archive.array("planes", "float64", (n_tables * n_bits, dim)),
                         shifts=archive.array("shifts", "float64", (n_tables * n_bits,)),
                         mult=archive.array("mult", "uint64", (n_tables, n_bits)))
        else:
            state.update(n_bits=archive.scalar("n_bits", int, low=-1, high=MAX_TREE_BITS),
                         seed=archive.scalar("seed", int, low=0, high=2**63 - 1),
                         fit_size=archive.scalar("fit_size", int, low=0))
            if archive.members & set(FITTED):
                archive.expect(COMMON + TREE + SETTINGS + FITTED)
                state["mean"] = archive.array("mean", "float32", (dim,))
                state["rotation"] = archive.array("rotation", "float32", (None, dim))
                p = state["rotation"].shape[0]
                r = state["tree_dims"] = archive.scalar("tree_dims", int, low=1, high=p)
                state["sketch_dims"] = archive.scalar("sketch_dims", int, low=0, high=p)
                state["coarse"] = archive.array("coarse", "float32", (n_tables, None, r))
                c1 = state["coarse"].shape[1]
                state["offsets"] = archive.array("offsets", "int64", (n_tables, c1 + 1))
                state["fine"] = archive.array("fine", "float32", (n_tables, None, r))
        return load_index(cls, state)


def _problem(message: str) -> ValueError:
    return ValueError(f"not a valid LSHIndex state: {message}")


def _random_family(state, dim, l2, n_tables) -> RandomFamily:
    n_bits = int(state["n_bits"])
    planes, shifts, mult = state["planes"], state["shifts"], state["mult"]
    width = float(state["bucket_width"])
    if not 1 <= n_bits <= 64:
        raise _problem(f"n_bits {n_bits}")
    if np.shape(planes) != (n_tables * n_bits, dim) or np.shape(shifts) != (n_tables * n_bits,) \
            or np.shape(mult) != (n_tables, n_bits) or np.asarray(mult).dtype != np.uint64:
        raise _problem("hash functions of the wrong shape")
    if not (np.isnan(width) or (width > 0 and np.isfinite(1.0 / width))):
        raise _problem(f"bucket width {width}")
    if not (np.isfinite(planes).all() and np.isfinite(shifts).all()
            and ((0 <= shifts) & (shifts < 1)).all() and (np.asarray(mult) & 1).all()):
        # Finite planes and shifts in [0, 1), odd multipliers: as the constructor draws them.
        raise _problem("invalid hash functions")
    return RandomFamily(dim, l2, planes, shifts, mult, None if np.isnan(width) else width)


def _tree_family(state, dim, l2, n_tables) -> TreeFamily:
    n_bits, seed, fit_size = int(state["n_bits"]), int(state["seed"]), int(state["fit_size"])
    if n_bits != -1 and not MIN_TREE_BITS <= n_bits <= MAX_TREE_BITS:
        raise _problem(f"n_bits {n_bits}")
    if not (0 <= seed < 2**63) or fit_size < 0:
        raise _problem("seed or fit size out of range")
    fitted = [state.get(name) for name in FITTED]
    family = TreeFamily(dim, l2, n_tables, None if n_bits == -1 else n_bits, seed)
    if all(part is None for part in fitted):
        return family
    if any(part is None for part in fitted):
        raise _problem("part of the k-means trees")
    mean, rotation, r, sketch, coarse, fine, offsets = (np.asarray(part) for part in fitted)
    r, sketch = int(r), int(sketch)
    n_leaves = fine.shape[1] if fine.ndim == 3 else 0
    bits = n_leaves.bit_length() - 1
    if not (MIN_TREE_BITS <= bits <= MAX_TREE_BITS and n_leaves == 1 << bits) \
            or (n_bits != -1 and bits != n_bits):
        raise _problem(f"k-means trees of {n_leaves} leaves")
    c1, p = coarse_cells(bits), rotation.shape[0] if rotation.ndim == 2 else 0
    if mean.shape != (dim,) or rotation.shape != (p, dim) or not 1 <= r <= min(p, dim) \
            or not 0 <= sketch <= min(p, dim - 1) \
            or coarse.shape != (n_tables, c1, r) or fine.shape != (n_tables, n_leaves, r) \
            or offsets.shape != (n_tables, c1 + 1) or offsets.dtype != np.int64:
        raise _problem(f"k-means trees of shapes {rotation.shape}, {coarse.shape}, "
                       f"{fine.shape}, {offsets.shape}")
    # Every cell owns at least one leaf, and the leaves of the cells tile the tree.
    if not ((offsets[:, 0] == 0).all() and (offsets[:, -1] == n_leaves).all()
            and (np.diff(offsets, axis=1) >= 1).all()):
        raise _problem("leaf offsets that do not tile the trees")
    # Directions of unit length and a finite mean keep the projections finite;
    # centres with finite squared norms keep every score finite.
    if not (np.isfinite(mean).all() and np.isfinite(rotation).all()
            and np.allclose(np.linalg.norm(rotation.astype(np.float64), axis=1), 1.0, atol=1e-3)):
        raise _problem("invalid principal directions")
    family = TreeFamily(dim, l2, n_tables, family.n_bits, seed, mean, rotation, r, sketch,
                        coarse, fine, offsets, fit_size)
    if not (np.isfinite(family.coarse_norms).all() and np.isfinite(family.fine_norms).all()):
        raise _problem("non-finite k-means centres")
    return family


def load_index(cls, state: dict):
    """A new index from a state dict (from :func:`state_of`, a pickle or a file)."""
    from dlkernels.neighbors.lsh import DTYPES, MAX_PROBES, METRICS

    try:
        dim, n_tables = int(state["dim"]), int(state["n_tables"])
        metric, dtype, hashing = str(state["metric"]), str(state["dtype"]), str(state["hashing"])
        vectors, ids, next_id = state["vectors"], state["ids"], int(state["next_id"])
        n_probes, max_candidates = int(state["n_probes"]), int(state["max_candidates"])
        make = {"random": _random_family, "kmeans": _tree_family}[hashing]
    except (KeyError, TypeError, ValueError) as exc:
        raise _problem(str(exc)) from None
    if metric not in METRICS or dtype not in DTYPES or dim < 1 or n_tables < 1 \
            or not 0 <= n_probes <= MAX_PROBES or max_candidates < 0 or next_id < 0:
        raise _problem("parameters out of range")
    try:
        family = make(state, dim, metric == "l2", n_tables)
    except KeyError as exc:
        raise _problem(f"no {exc}") from None
    index = cls.__new__(cls)
    index._setup(dim, metric, np.dtype(dtype), family, n_probes, max_candidates)
    points = index._points(vectors, "vectors", allow_empty=True)
    ids = np.asarray(ids)
    if ids.shape != (points.shape[0],) or ids.dtype.kind not in "iu":
        raise _problem("ids do not match the vectors")
    if points.shape[0]:
        ids = index._new_ids(ids, points.shape[0])
        if not family.ready:
            raise _problem("vectors without fitted hash functions")
        n_threads = check_n_threads(None)
        index._store.append(points, ids, family.keys(points, n_threads), n_threads)
        next_id = max(next_id, int(ids.max()) + 1)
    index._next_id = next_id
    return index
