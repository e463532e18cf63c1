"""Training sequences -> one flat token array cut into sentences and chunks.

The kernel reads a corpus as ``tokens`` (int32, every kept id in order) and
``offsets`` (sentence ``s`` is ``tokens[offsets[s]:offsets[s + 1]]``). A value of
-1 is padding (a random walk that stopped early): it ends a sentence, so no
window ever reaches across it.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from dlkernels._lib.arrays import is_tensor
from dlkernels._lib.validation import as_array

# Words per training chunk: the unit of parallel work and of random streams
# (whole sentences, so a chunk holds at least this many words unless it is the last).
CHUNK_WORDS = 10_000
# ids are int32 in the kernel.
MAX_VOCAB = 2**31 - 1


def _integer_array(x, name: str, ndim: int) -> np.ndarray:
    arr = as_array(x, name)
    if arr.dtype.kind not in "iu" and (arr.size or arr.dtype.kind not in "f"):
        raise TypeError(f"{name} must hold integer ids, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {arr.shape}")
    return arr


def flatten(sequences) -> np.ndarray:
    """One int64 array of every id, -1 wherever a sentence ends (and at the end)."""
    if isinstance(sequences, (str, bytes)):
        raise TypeError(f"sequences must be a 2-D integer array or an iterable of 1-D "
                        f"integer arrays, got {type(sequences).__name__}")
    if isinstance(sequences, np.ndarray) or is_tensor(sequences):
        arr = _integer_array(sequences, "sequences", 2)
        padded = np.full((arr.shape[0], arr.shape[1] + 1), -1, dtype=np.int64)
        if arr.size:
            _check_ids_fit(arr, "sequences")
            padded[:, :-1] = arr
        return padded.reshape(-1)
    if not isinstance(sequences, Iterable):
        raise TypeError(f"sequences must be a 2-D integer array or an iterable of 1-D "
                        f"integer arrays, got {type(sequences).__name__}")
    parts = []
    for i, seq in enumerate(sequences):
        arr = _integer_array(seq, f"sequences[{i}]", 1)
        if arr.size:
            _check_ids_fit(arr, f"sequences[{i}]")
        parts.append(arr.astype(np.int64, copy=False))
        parts.append(np.array([-1], dtype=np.int64))
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def _check_ids_fit(arr: np.ndarray, name: str) -> None:
    # Before the int64 conversion: a uint64 id past 2**63 would wrap negative.
    if arr.dtype.kind == "u" and arr.max() > MAX_VOCAB:
        pos = int(np.argmax(arr.reshape(-1) > MAX_VOCAB))
        raise ValueError(f"{name} holds id {arr.reshape(-1)[pos]} at flat position {pos}, "
                         f"beyond the largest supported id {MAX_VOCAB - 1}")


def split(flat: np.ndarray, vocab_size: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """``(tokens, offsets, vocab_size)`` from :func:`flatten`'s output, every id checked."""
    bad = flat < -1
    if bad.any():
        pos = int(np.argmax(bad))
        raise ValueError(f"sequences must hold ids >= 0 (or -1 for padding), got {flat[pos]} "
                         f"at flat position {pos}")
    valid = flat >= 0
    largest = int(flat.max()) if flat.size else -1
    if vocab_size is None:
        vocab_size = largest + 1
        if vocab_size > MAX_VOCAB:
            raise ValueError(f"sequences holds id {largest}, beyond the largest supported "
                             f"id {MAX_VOCAB - 1}")
    elif largest >= vocab_size:
        pos = int(np.argmax(flat >= vocab_size))
        raise ValueError(f"sequences must hold ids < vocab_size={vocab_size}, got {flat[pos]} "
                         f"at flat position {pos}")
    # A sentence starts at every valid id whose predecessor is padding (the flat
    # array ends with -1 and holds one after every sequence, so [-1] is a safe "previous").
    starts_flat = valid & ~np.roll(valid, 1)
    position = np.cumsum(valid) - 1          # index of each valid id in `tokens`
    offsets = np.append(position[starts_flat], np.count_nonzero(valid)).astype(np.int64)
    tokens = flat[valid].astype(np.int32)
    lengths = np.diff(offsets)
    if not (lengths >= 2).any():
        raise ValueError(f"sequences has nothing to train on: no sequence holds two or more "
                         f"ids ({tokens.size} ids in {lengths.size} sequences)")
    return tokens, offsets, vocab_size


def chunk_bounds(offsets: np.ndarray) -> np.ndarray:
    """Sentence indices where chunks start (and the end): whole sentences, about
    CHUNK_WORDS words each, fixed by the corpus alone (never by the thread count)."""
    # Chunk of a sentence = how many CHUNK_WORDS boundaries precede its start.
    chunk_of = offsets[:-1] // CHUNK_WORDS
    starts = np.flatnonzero(np.diff(chunk_of, prepend=-1))
    return np.append(starts, offsets.size - 1).astype(np.int64)
