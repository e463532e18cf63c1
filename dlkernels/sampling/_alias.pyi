import numpy as np
import numpy.typing as npt

def build_table(weights: npt.NDArray[np.float64], table: np.ndarray) -> None: ...
def sample(table: np.ndarray, out: npt.NDArray[np.int64], key: int, n_threads: int) -> None: ...
def sample_excluding(
    table: np.ndarray,
    probs: npt.NDArray[np.float64],
    exclude: npt.NDArray[np.int64],
    out: npt.NDArray[np.int64],
    key: int,
    n_threads: int,
) -> None: ...
