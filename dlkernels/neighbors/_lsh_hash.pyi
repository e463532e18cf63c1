import numpy as np
import numpy.typing as npt

def random_keys(
    points: npt.NDArray[np.floating],
    planes: npt.NDArray[np.float64],
    shifts: npt.NDArray[np.float64],
    width: float,
    l2: bool,
    mult: npt.NDArray[np.uint64],
    store_keys: bool,
    out: npt.NDArray[np.uint64],
    n_threads: int,
) -> None: ...
def tree_keys(
    points: npt.NDArray[np.floating],
    mean: npt.NDArray[np.float32],
    basis: npt.NDArray[np.float32],
    coarse: npt.NDArray[np.float32],
    coarse_norms: npt.NDArray[np.float32],
    fine: npt.NDArray[np.float32],
    fine_norms: npt.NDArray[np.float32],
    offsets: npt.NDArray[np.int64],
    normalize: bool,
    store_keys: bool,
    out: npt.NDArray[np.uint64],
    n_threads: int,
) -> None: ...
def sketch(
    points: npt.NDArray[np.floating],
    mean: npt.NDArray[np.float32],
    basis: npt.NDArray[np.float32],
    normalize: bool,
    out: npt.NDArray[np.uint8],
    n_threads: int,
) -> None: ...
def directory(keys: npt.NDArray[np.uint64], bits: int, out: npt.NDArray[np.uint32]) -> None: ...
def nearest(
    points: npt.NDArray[np.float32],
    centres: npt.NDArray[np.float32],
    norms: npt.NDArray[np.float32],
    out: npt.NDArray[np.int64],
    n_threads: int,
) -> None: ...
def nearest_in_cells(
    points: npt.NDArray[np.float32],
    cells: npt.NDArray[np.int64],
    fine: npt.NDArray[np.float32],
    fine_norms: npt.NDArray[np.float32],
    offsets: npt.NDArray[np.int64],
    out: npt.NDArray[np.int64],
    n_threads: int,
) -> None: ...
def sum_by_label(
    points: npt.NDArray[np.float32], labels: npt.NDArray[np.int64], out: npt.NDArray[np.float64]
) -> None: ...
