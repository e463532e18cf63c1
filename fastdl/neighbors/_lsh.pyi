import numpy as np
import numpy.typing as npt

def hash_codes(
    proj: npt.NDArray[np.float64],
    n_tables: int,
    n_bits: int,
    l2: bool,
    mult: npt.NDArray[np.uint64],
    store_keys: bool,
    out: npt.NDArray[np.uint64],
    n_threads: int,
) -> None: ...
def directory(keys: npt.NDArray[np.uint64], bits: int, out: npt.NDArray[np.uint32]) -> None: ...
def query(
    keys: npt.NDArray[np.uint64],
    rows: npt.NDArray[np.int32],
    run_starts: npt.NDArray[np.int64],
    dir_bits: npt.NDArray[np.int32],
    dir_offsets: npt.NDArray[np.int64],
    dirs: npt.NDArray[np.uint32],
    alive: npt.NDArray[np.uint8],
    mult: npt.NDArray[np.uint64],
    row_ids: npt.NDArray[np.int64],
    inv_norms: npt.NDArray[np.float64],
    l2: bool,
    vectors: npt.NDArray[np.floating],
    queries: npt.NDArray[np.floating],
    proj: npt.NDArray[np.float64],
    n_extra: int,
    out_dist: npt.NDArray[np.floating],
    out_ids: npt.NDArray[np.int64],
    n_threads: int,
) -> None: ...
def candidates(
    keys: npt.NDArray[np.uint64],
    rows: npt.NDArray[np.int32],
    run_starts: npt.NDArray[np.int64],
    dir_bits: npt.NDArray[np.int32],
    dir_offsets: npt.NDArray[np.int64],
    dirs: npt.NDArray[np.uint32],
    alive: npt.NDArray[np.uint8],
    mult: npt.NDArray[np.uint64],
    row_ids: npt.NDArray[np.int64],
    inv_norms: npt.NDArray[np.float64],
    l2: bool,
    proj: npt.NDArray[np.float64],
    n_extra: int,
    counts: npt.NDArray[np.int64],
    offsets: npt.NDArray[np.int64],
    out: npt.NDArray[np.int64],
    n_threads: int,
) -> None: ...
