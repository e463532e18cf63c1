import numpy as np
import numpy.typing as npt

def build(nodes: npt.NDArray[np.float64], leaves: npt.NDArray[np.float64]) -> None: ...
def update(
    nodes: npt.NDArray[np.float64],
    indices: npt.NDArray[np.int64],
    values: npt.NDArray[np.float64],
) -> None: ...
def find(
    nodes: npt.NDArray[np.float64],
    prefix_sums: npt.NDArray[np.float64],
    out: npt.NDArray[np.int64],
    n_threads: int,
) -> None: ...
def sample(
    nodes: npt.NDArray[np.float64],
    out: npt.NDArray[np.int64],
    key: int,
    stratified: bool,
    n_threads: int,
    weights: npt.NDArray[np.float64] | None = ...,
    beta: float = ...,
) -> None: ...
