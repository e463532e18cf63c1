import numpy as np
import numpy.typing as npt

def build_tables(
    indptr: npt.NDArray[np.int64],
    weights: npt.NDArray[np.float64],
    table: np.ndarray,
    totals: npt.NDArray[np.float64],
    n_threads: int,
) -> None: ...
def random_walks(
    indptr: npt.NDArray[np.int64],
    indices: npt.NDArray[np.int32],
    weights: npt.NDArray[np.float64],
    table: np.ndarray,
    totals: npt.NDArray[np.float64],
    directed: bool,
    starts: npt.NDArray[np.int64],
    out: npt.NDArray[np.int32],
    p: float,
    q: float,
    key: int,
    first_row: int,
    n_threads: int,
) -> None: ...
