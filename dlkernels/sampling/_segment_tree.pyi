import numpy as np
import numpy.typing as npt

_F = npt.NDArray[np.float64]
_I = npt.NDArray[np.int64]

def level_sizes(capacity: int) -> list[int]: ...
def build(sums: _F, mins: _F, offsets: _I, leaves: _F) -> None: ...
def update(
    sums: _F, mins: _F, offsets: _I, indices: _I, values: _F, power: float = ...,
    check_total: bool = ...,
) -> float: ...
def total(sums: _F, offsets: _I) -> float: ...
def minimum(sums: _F, mins: _F, offsets: _I) -> float: ...
def find(sums: _F, offsets: _I, prefix_sums: _F, out: _I, n_threads: int) -> None: ...
def sample(
    sums: _F,
    mins: _F,
    offsets: _I,
    out: _I,
    key: int,
    stratified: bool,
    n_threads: int,
    weights: _F | None = ...,
    beta: float = ...,
) -> None: ...
