"""Training sequences, read in batches of whole chunks, as often as training needs.

The kernel reads a batch as ``tokens`` (int32, every kept id in order) and
``offsets`` (sentence ``s`` is ``tokens[offsets[s]:offsets[s + 1]]``). A value of
-1 is padding (a random walk that stopped early): it ends a sentence, so no
window ever reaches across it. The end of a row ends a sentence too.

Sequences come as a 2-D array (each row a sequence), an iterable of parts (each
a 1-D sequence or a 2-D array of rows), or a directory of ``.npy`` shards read
in the order of their names. Training reads them more than once: a first pass
counts the ids (the noise distribution, subsampling and the learning-rate
schedule need the counts and the length of the whole corpus), then one pass per
epoch trains. Only a batch is converted at a time, so shards larger than memory
train too.

Chunks of about CHUNK_WORDS words are the unit of parallel work and of random
streams. They depend on the corpus alone (the global position of each
sentence), never on how it is split into parts, shards or batches: the same
sequences give the same training whatever their packaging.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlkernels._lib.arrays import is_tensor
from dlkernels._lib.validation import as_array, check_alloc

# Words per training chunk (whole sentences: a chunk holds at least this many
# words unless it is the last).
CHUNK_WORDS = 10_000
# ids are int32 in the kernel.
MAX_VOCAB = 2**31 - 1
# Cells of a 2-D part converted at once (its int64 copy is 8 bytes a cell).
PIECE_CELLS = 1 << 21
# Tokens gathered before a batch of whole chunks goes to the kernel: about 200
# chunks, enough to keep every thread busy between two calls.
BATCH_TOKENS = 1 << 21

_WHAT = ("a 2-D integer array, an iterable of integer arrays (1-D sequences or 2-D "
         "blocks of rows) or a directory of .npy shards")


@dataclass
class Batch:
    """Whole chunks of the corpus, ready for the kernel."""
    tokens: np.ndarray       # int32
    offsets: np.ndarray      # int64, local: sentence s is tokens[offsets[s]:offsets[s + 1]]
    bounds: np.ndarray       # int64, local sentence index where each chunk starts, then the end
    first_chunk: int         # global index of the batch's first chunk
    first_token: int         # global position of its first token
    max_len: int             # longest sentence

    @property
    def n_chunks(self) -> int:
        return self.bounds.size - 1


@dataclass
class Summary:
    """What the first pass learns: every count training needs before it starts."""
    counts: np.ndarray       # int64, per id
    n_tokens: int
    n_chunks: int


class Corpus:
    """The sequences given to ``fit``, checked in full before training starts."""

    def __init__(self, sequences):
        self._parts = _parts(sequences)

    # -- the two passes -------------------------------------------------------------
    def scan(self, vocab_size: int | None, bytes_per_id: int = 8) -> Summary:
        """Check every id, count them, and find the corpus's length in tokens and chunks.

        ``bytes_per_id`` is what training will allocate per id of the vocabulary:
        a vocabulary (given, or implied by the largest id) that cannot fit in
        memory is refused before anything that size is allocated.
        """
        if vocab_size is not None:
            check_alloc(vocab_size, bytes_per_id, "vocab_size")
        counts = np.zeros(vocab_size or 0, dtype=np.int64)
        n_tokens = n_sentences = n_chunks = 0
        last_chunk = -1
        trainable = False
        for tokens, lengths in self._pieces(vocab_size):
            if tokens.size:
                top = int(tokens.max())
                if top >= counts.size:
                    check_alloc(top + 1, bytes_per_id, f"sequences holds id {top}: its vocabulary")
                    counts = np.concatenate([counts, np.zeros(top + 1 - counts.size, np.int64)])
                counts[:top + 1] += np.bincount(tokens)
            starts = n_tokens + np.cumsum(lengths) - lengths
            chunk_of = starts // CHUNK_WORDS
            n_chunks += int(np.count_nonzero(np.diff(chunk_of, prepend=last_chunk)))
            if chunk_of.size:
                last_chunk = int(chunk_of[-1])
            trainable = trainable or bool((lengths >= 2).any())
            n_tokens += int(tokens.size)
            n_sentences += int(lengths.size)
        if not trainable:
            raise ValueError(f"sequences has nothing to train on: no sequence holds two or more "
                             f"ids ({n_tokens} ids in {n_sentences} sequences)")
        return Summary(counts, n_tokens, n_chunks)

    def batches(self, summary: Summary):
        """Batches of whole chunks, in corpus order (one pass: call again per epoch)."""
        vocab_size = summary.counts.size
        pending_tokens: list[np.ndarray] = []
        pending_lengths: list[np.ndarray] = []
        held = 0                 # tokens pending
        first_token = 0          # global position of the first pending token
        first_chunk = 0
        seen = 0
        for tokens, lengths in self._pieces(vocab_size):
            seen += tokens.size
            if seen > summary.n_tokens:
                break
            pending_tokens.append(tokens)
            pending_lengths.append(lengths)
            held += tokens.size
            if held >= BATCH_TOKENS:
                batch, rest_t, rest_l = _cut(pending_tokens, pending_lengths, first_token,
                                             first_chunk, final=False)
                if batch is not None:
                    yield batch
                    first_token += int(batch.tokens.size)
                    first_chunk += batch.n_chunks
                    pending_tokens, pending_lengths = [rest_t], [rest_l]
                    held = int(rest_t.size)
        if seen != summary.n_tokens:
            raise ValueError(f"sequences changed while training read them: {seen} ids now, "
                             f"{summary.n_tokens} when they were counted")
        if held or pending_lengths:
            batch, _, _ = _cut(pending_tokens, pending_lengths, first_token, first_chunk,
                               final=True)
            if batch is not None and batch.offsets.size > 1:
                yield batch

    # -- reading ------------------------------------------------------------------------
    def _pieces(self, vocab_size: int | None):
        """``(tokens int32, sentence lengths int64)`` per piece, every id checked."""
        for label, part in self._parts:
            arr = _load(label, part)
            if arr.ndim == 1:
                yield _convert(arr[None, :], label, 0, vocab_size, one_row=True)
                continue
            rows_per_piece = max(1, PIECE_CELLS // max(arr.shape[1] + 1, 1))
            for r in range(0, arr.shape[0], rows_per_piece):
                yield _convert(arr[r:r + rows_per_piece], label, r, vocab_size, one_row=False)


def _parts(sequences) -> list[tuple[str, object]]:
    """``(label for messages, array or shard path)`` for each part of ``sequences``."""
    if isinstance(sequences, (str, os.PathLike)):
        folder = Path(sequences)
        if not folder.is_dir():
            raise ValueError(f"sequences must be {_WHAT}; {os.fspath(sequences)!r} is not a "
                             f"directory")
        shards = sorted(p for p in folder.iterdir() if p.suffix == ".npy" and p.is_file())
        if not shards:
            raise ValueError(f"sequences: the directory {os.fspath(sequences)!r} holds no "
                             f".npy shards")
        return [(str(p), p) for p in shards]
    if isinstance(sequences, (bytes, bytearray)):
        raise TypeError(f"sequences must be {_WHAT}, got {type(sequences).__name__}")
    if isinstance(sequences, np.ndarray) or is_tensor(sequences):
        arr = as_array(sequences, "sequences")
        if arr.ndim != 2:
            raise ValueError(f"sequences must be 2-dimensional (one sequence per row), got "
                             f"shape {arr.shape}")
        return [("sequences", arr)]
    if not isinstance(sequences, Iterable):
        raise TypeError(f"sequences must be {_WHAT}, got {type(sequences).__name__}")
    parts = []
    for i, seq in enumerate(sequences):   # a one-shot iterator is read here, once
        label = f"sequences[{i}]"
        if isinstance(seq, (str, bytes)):
            raise TypeError(f"{label} must be an integer array, got {type(seq).__name__}")
        arr = as_array(seq, label)
        if arr.ndim not in (1, 2):
            raise ValueError(f"{label} must be 1-dimensional (a sequence) or 2-dimensional "
                             f"(rows of sequences), got shape {arr.shape}")
        parts.append((label, arr))
    return parts


def _load(label: str, part) -> np.ndarray:
    if not isinstance(part, Path):
        return part
    try:
        arr = np.load(part, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"{label}: not a readable .npy array of walks ({exc})") from None
    if arr.ndim not in (1, 2):
        raise ValueError(f"{label}: a shard must be 1- or 2-dimensional, got shape {arr.shape}")
    return arr


def _convert(arr: np.ndarray, label: str, row0: int, vocab_size: int | None, *,
             one_row: bool):
    """Rows -> (tokens, sentence lengths): -1 and the end of each row end a sentence."""
    if arr.dtype.kind not in "iu" and (arr.size or arr.dtype.kind != "f"):
        raise TypeError(f"{label} must hold integer ids, got dtype {arr.dtype}")
    rows, width = arr.shape
    padded = np.full((rows, width + 1), -1, dtype=np.int64)
    if arr.size:
        if arr.dtype.kind == "u" and arr.max() > MAX_VOCAB:
            # Before the int64 conversion: a uint64 past 2**63 would wrap negative.
            _refuse(label, arr, arr > MAX_VOCAB, row0, one_row,
                    f"beyond the largest supported id {MAX_VOCAB - 1}")
        padded[:, :-1] = arr
        body = padded[:, :-1]
        if body.min() < -1:
            _refuse(label, body, body < -1, row0, one_row, "", rule="ids >= 0 (or -1 for padding)")
        if vocab_size is not None and body.max() >= vocab_size:
            _refuse(label, body, body >= vocab_size, row0, one_row, "",
                    rule=f"ids < vocab_size={vocab_size}")
        if body.max() >= MAX_VOCAB:
            _refuse(label, body, body >= MAX_VOCAB, row0, one_row,
                    f"beyond the largest supported id {MAX_VOCAB - 1}")
    flat = padded.reshape(-1)
    valid = flat >= 0
    # A sentence starts at every valid id whose predecessor is padding (each row
    # ends with -1, so the wrap-around of roll reads padding).
    starts = valid & ~np.roll(valid, 1)
    position = np.cumsum(valid) - 1
    offsets = np.append(position[starts], np.count_nonzero(valid))
    return flat[valid].astype(np.int32), np.diff(offsets).astype(np.int64)


def _refuse(label, values, bad, row0, one_row, what, *, rule=None):
    row, col = np.unravel_index(int(np.argmax(bad)), bad.shape)
    value = values[row, col]
    where = f"position {col}" if one_row else f"row {row0 + row}, column {col}"
    if rule is not None:
        raise ValueError(f"{label} must hold {rule}, got {value} at {where}")
    raise ValueError(f"{label} holds id {value} at {where}, {what}")


def _cut(tokens_list, lengths_list, first_token: int, first_chunk: int, *, final: bool):
    """The pending sentences' whole chunks as a Batch, and the sentences left over.

    Unless ``final``, the last chunk may still grow, so it stays pending.
    """
    tokens = np.concatenate(tokens_list) if len(tokens_list) != 1 else tokens_list[0]
    lengths = np.concatenate(lengths_list) if len(lengths_list) != 1 else lengths_list[0]
    offsets = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    chunk_of = (first_token + offsets[:-1]) // CHUNK_WORDS
    starts = np.flatnonzero(np.diff(chunk_of, prepend=-1))
    keep = lengths.size if final else (int(starts[-1]) if starts.size else 0)
    if keep == 0:
        return None, tokens, lengths
    n_chunks = int(np.count_nonzero(starts < keep))
    bounds = np.append(starts[:n_chunks], keep).astype(np.int64)
    end = int(offsets[keep])
    batch = Batch(tokens[:end], offsets[:keep + 1], bounds, first_chunk, first_token,
                  int(lengths[:keep].max()))
    return batch, tokens[end:], lengths[keep:]
