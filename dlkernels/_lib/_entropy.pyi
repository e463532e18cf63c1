import numpy as np
import numpy.typing as npt

ERR_END: int
ERR_NO_CODE: int
ERR_STATE: int

def huffman_decode_canonical(data: npt.NDArray[np.uint8], n_bits: int, count: npt.NDArray[np.int64],
                             symbols: npt.NDArray[np.int64], out: npt.NDArray[np.int64]) -> int: ...
def rans_encode(symbols: npt.NDArray[np.int64], seg_end: npt.NDArray[np.int64],
                seg_table: npt.NDArray[np.int64], freq: npt.NDArray[np.uint32],
                cum: npt.NDArray[np.uint32], table_offset: npt.NDArray[np.int64],
                scale_bits: npt.NDArray[np.int32]) -> bytes: ...
def rans_decode(data: npt.NDArray[np.uint8], seg_end: npt.NDArray[np.int64],
                seg_table: npt.NDArray[np.int64], freq: npt.NDArray[np.uint32],
                cum: npt.NDArray[np.uint32], table_offset: npt.NDArray[np.int64],
                scale_bits: npt.NDArray[np.int32], lookup: npt.NDArray[np.int32],
                lookup_offset: npt.NDArray[np.int64], out: npt.NDArray[np.int64]) -> int: ...
