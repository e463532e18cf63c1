import numpy as np

AVX2: bool

def train(
    syn0: np.ndarray,
    syn1neg: np.ndarray,
    syn1: np.ndarray,
    tokens: np.ndarray,
    offsets: np.ndarray,
    chunk_bounds: np.ndarray,
    chunk_start: int,
    chunk_stop: int,
    keep: np.ndarray,
    table: np.ndarray,
    paths: np.ndarray,
    path_labels: np.ndarray,
    code_len: np.ndarray,
    window: int,
    negative: int,
    hs: bool,
    alpha: float,
    min_alpha: float,
    words_before: float,
    words_all: float,
    max_len: int,
    key: int,
    stream_base: int,
    chunk_loss: np.ndarray,
    chunk_pairs: np.ndarray,
    chunk_words: np.ndarray,
    n_threads: int,
) -> None: ...
