import numpy as np
import numpy.typing as npt

_A = npt.NDArray[np.float32] | npt.NDArray[np.float64]
_I = npt.NDArray[np.int64]
# One tree of a forest: (points, perm, dims, vals, boxes, leaf_start, id_offset).
_TreeTuple = tuple[_A, _I, npt.NDArray[np.int32], _A, _A, _I, int]

def knn(
    trees: list[_TreeTuple],
    x: _A,
    k: int,
    p: int,
    bound: float,
    out_d: _A,
    out_i: _I,
    max_depth: int,
    max_leaf: int,
    n_threads: int,
) -> None: ...
def radius(
    trees: list[_TreeTuple],
    x: _A,
    p: int,
    r: npt.NDArray[np.float64],
    sort_results: bool,
    max_depth: int,
    max_leaf: int,
    n_threads: int,
) -> tuple[_I, _A, _I]: ...
