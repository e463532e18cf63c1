import numpy as np
import numpy.typing as npt

_A = npt.NDArray[np.float32] | npt.NDArray[np.float64]
_I = npt.NDArray[np.int64]

def layout(n: int, leafsize: int) -> int: ...
def build(
    data: _A,
    points: _A,
    perm: _I,
    dims: npt.NDArray[np.int32],
    vals: _A,
    boxes: _A,
    leaf_start: _I,
    depth: int,
    n_threads: int,
) -> None: ...
def extract(points: _A, perm: _I, leaf_start: _I, out: _A) -> None: ...
def check_tree(
    points: _A, perm: _I, dims: npt.NDArray[np.int32], vals: _A, boxes: _A, leaf_start: _I, d: int
) -> str: ...
def first_outside(values: _A, bound: float) -> int: ...
