import numpy as np
import numpy.typing as npt

def optimal(
    v: npt.NDArray[np.float64], w: npt.NDArray[np.float64], shift: float, bounds: npt.NDArray[np.int64],
    n_threads: int, algorithm: int = 0, mode: int = 0,
) -> int: ...
