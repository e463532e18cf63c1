import numpy as np
import numpy.typing as npt

# store: (entries, run_starts, dir_bits, dir_offsets, dirs, alive, row_ids, seq,
#         inv_norms, sketch, dim, l2), see _lsh_store.BucketStore.kernel_args
# family: ("random", planes, shifts, width, mult, tmpl_pos, tmpl_off, l2) or
#         ("tree", coarse, coarse_norms, fine, fine_norms, offsets, normalize, p1,
#          widest, max_offer)
def query(
    store: tuple,
    family: tuple,
    vectors: npt.NDArray[np.floating],
    queries: npt.NDArray[np.floating],
    n_extra: int,
    max_candidates: int,
    out_dist: npt.NDArray[np.floating],
    out_ids: npt.NDArray[np.int64],
    counts: npt.NDArray[np.int64],
    n_threads: int,
) -> None: ...
def exact(
    store: tuple,
    family: tuple,
    vectors: npt.NDArray[np.floating],
    queries: npt.NDArray[np.floating],
    rows: npt.NDArray[np.int32],
    n_extra: int,
    out_dist: npt.NDArray[np.floating],
    out_ids: npt.NDArray[np.int64],
    n_threads: int,
) -> None: ...
def candidates(
    store: tuple,
    family: tuple,
    queries: npt.NDArray[np.floating],
    n_extra: int,
    max_candidates: int,
    counts: npt.NDArray[np.int64],
    offsets: npt.NDArray[np.int64],
    out: npt.NDArray[np.int64],
    n_threads: int,
) -> None: ...
