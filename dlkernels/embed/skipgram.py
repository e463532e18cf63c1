"""word2vec's skip-gram: train dense vectors from integer id sequences."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from dlkernels._lib.array_types import (ArrayLike, FloatArray, IntArray, NDArray, PathLike,
                                        RngLike, Tensor)
from dlkernels._lib.locks import reads, writes
from dlkernels._lib.persist import read_archive, save_arrays
from dlkernels._lib.random import check_rng, draw_key
from dlkernels._lib.threads import check_n_threads
from dlkernels._lib.validation import check_bool, check_count, check_real
from dlkernels.embed import _corpus, _skipgram
from dlkernels.huffman import huffman_tree
from dlkernels.sampling import NegativeSampler

if TYPE_CHECKING:
    from dlkernels._lib.persist import Archive

__all__ = ["SkipGram"]

_PARAMS = ("dim", "window", "n_negatives", "hs", "sample", "alpha", "min_alpha", "epochs")
# How each hyper-parameter is stored in a file, under which member name: files
# keep word2vec's "negative" (the name of format 1), so older files load.
PARAM_KINDS = {"dim": int, "window": int, "n_negatives": int, "hs": bool, "sample": float,
               "alpha": float, "min_alpha": float, "epochs": int}
FILE_NAMES = {name: ("negative" if name == "n_negatives" else name) for name in _PARAMS}
_FITTED = ("vectors", "syn1neg", "syn1", "counts", "loss_history", "trained_words")

# Bounds that the kernel's types hold with room to spare. dim, window and
# n_negatives size per-thread scratch buffers (int32 counts in the kernel).
MAX_DIM = 1 << 20
MAX_WINDOW = 1 << 20
MAX_NEGATIVES = 1 << 20
MAX_EPOCHS = 1 << 31
# The learning rate is cast to float32 in the kernel: it must stay finite there.
MAX_ALPHA = float(np.finfo(np.float32).max)


def check_params(*, dim: int, window: int, n_negatives: int, hs: bool, sample: float,
                 alpha: float, min_alpha: float, epochs: int) -> dict[str, Any]:
    """The validated hyper-parameters of :class:`SkipGram` (shared with Node2Vec)."""
    hs = check_bool(hs, "hs")
    params = {
        "dim": check_count(dim, "dim", minimum=1, maximum=MAX_DIM),
        "window": check_count(window, "window", minimum=1, maximum=MAX_WINDOW),
        "n_negatives": check_count(n_negatives, "n_negatives", minimum=0 if hs else 1,
                                   maximum=MAX_NEGATIVES),
        "hs": hs,
        "sample": check_real(sample, "sample", low=0.0),
        "alpha": check_real(alpha, "alpha", low=0.0, low_open=True, high=MAX_ALPHA),
        "min_alpha": check_real(min_alpha, "min_alpha", low=0.0),
        "epochs": check_count(epochs, "epochs", minimum=1, maximum=MAX_EPOCHS),
    }
    if params["min_alpha"] > params["alpha"]:
        raise ValueError(f"min_alpha must be <= alpha={params['alpha']}, got {params['min_alpha']}")
    return params


class SkipGram:
    """Skip-gram word vectors (Mikolov et al., 2013), trained by lock-free parallel SGD.

    Each id of a sequence predicts the ids around it, up to ``window`` places
    away. The output layer is negative sampling (``n_negatives`` noise ids drawn
    from the unigram counts raised to 0.75), hierarchical softmax over the
    Huffman tree of the counts (``hs=True``), or both. Frequent ids are
    subsampled and the learning rate decays linearly from ``alpha`` to
    ``min_alpha`` over training.

    Parameters
    ----------
    dim : int, default 128
        Vector size, 1 to 2**20.
    window : int, default 5
        Largest distance between a centre id and its context (1 to 2**20); each
        centre draws its window size uniformly from ``1 .. window`` as word2vec
        does.
    n_negatives : int, default 5
        Noise ids per centre word (shared by its whole window; see Notes), up
        to 2**20. 0 is allowed only with ``hs=True``. (word2vec calls it
        ``negative``.)
    hs : bool, default False
        Also train a hierarchical softmax over the Huffman tree of the counts.
    sample : float, default 1e-3
        Subsampling threshold: an id with corpus frequency ``f`` is kept with
        probability ``(sqrt(f / sample) + 1) * sample / f`` (capped at 1).
        0 keeps every id. On a small vocabulary, where every id is frequent
        (a graph of a few hundred nodes), 1e-3 drops many occurrences: use a
        smaller value or 0 there.
    alpha, min_alpha : float, default 0.025 and 1e-4
        Learning rate at the start and at the end of training
        (``0 < min_alpha <= alpha``, at most the largest float32: the kernel
        computes in float32). A rate so large that the vectors overflow makes
        :meth:`fit` raise rather than return NaN vectors.
    epochs : int, default 1
        Passes over the sequences.
    rng : None, int or numpy.random.Generator
        Seeds the initial vectors and every random draw of training.
    n_threads : int or None
        Training threads (None: OpenMP's default).

    Every parameter is keyword-only.

    Attributes
    ----------
    vectors : numpy.ndarray of float32, shape (vocab_size, dim)
        The trained input vectors (word2vec's ``syn0``), one row per id.
    counts : numpy.ndarray of int64, shape (vocab_size,)
        How often each id occurs in the training sequences.
    loss_history : numpy.ndarray of float64, shape (epochs,)
        Mean skip-gram loss per (context, centre) pair in each epoch: the sum of
        ``-log sigmoid(+-dot)`` over the true and noise targets (and the Huffman
        path with ``hs=True``), measured as training went.

    Notes
    -----
    Negatives are drawn once per centre word and shared by all its context
    words (Ji et al., 2016), which turns a window's updates into one small
    dense block: faster, and as accurate in their measurements and in ours
    (see the user guide). Ids that never occur keep their random initial
    vectors.

    Reproducibility: every random draw (subsampling, window sizes, negatives)
    comes from fixed chunks of about 10,000 words with one random stream each,
    so the draws are the same at any ``n_threads``, and however the sequences
    are split into parts or shards. With ``n_threads=1`` the vectors are
    exactly reproducible. With more threads, the threads update the shared
    tables without locks (hogwild), and the order in which their updates land
    varies from run to run: the vectors then differ in their low bits and are
    equally good, but not bitwise equal.

    Thread safety: :meth:`fit` (a write) runs alone; the accessors,
    :meth:`most_similar` and the savers (reads) run concurrently with each
    other and wait for a fit in progress, so they never see half of one.

    Examples
    --------
    >>> import numpy as np
    >>> from dlkernels.embed import SkipGram
    >>> walks = np.array([[0, 1, 2, 0, 1, 2], [3, 4, 5, 3, 4, 5]] * 200)
    >>> model = SkipGram(dim=16, window=2, sample=0, epochs=3, rng=0, n_threads=1).fit(walks)
    >>> model.vectors.shape
    (6, 16)
    >>> bool(set(model.most_similar(0, k=2)[0].tolist()) == {1, 2})
    True
    """

    dim: int
    window: int
    n_negatives: int
    hs: bool
    sample: float
    alpha: float
    min_alpha: float
    epochs: int
    rng: RngLike
    n_threads: int | None

    def __init__(self, *, dim: int = 128, window: int = 5, n_negatives: int = 5,
                 hs: bool = False, sample: float = 1e-3, alpha: float = 0.025,
                 min_alpha: float = 1e-4, epochs: int = 1, rng: RngLike = None,
                 n_threads: int | None = None) -> None:
        params = check_params(dim=dim, window=window, n_negatives=n_negatives, hs=hs,
                              sample=sample, alpha=alpha, min_alpha=min_alpha, epochs=epochs)
        check_n_threads(n_threads)
        if rng is not None:
            check_rng(rng)  # refuse a bad rng now; the Generator itself is made at fit
        for name, value in params.items():
            setattr(self, name, value)
        self.rng = rng
        self.n_threads = n_threads
        self._fitted: dict[str, Any] | None = None

    # -- training ------------------------------------------------------------------
    @writes
    def fit(self, sequences: ArrayLike | Tensor | Iterable[ArrayLike | Tensor] | PathLike, *,
            vocab_size: int | None = None, progress: bool = False) -> SkipGram:
        """Train vectors on ``sequences`` (from scratch) and return the model.

        Parameters
        ----------
        sequences : 2-D integer array, iterable of integer arrays, or a directory
            Id sequences, e.g. random walks on a graph. In a 2-D array (or
            tensor) each row is a sequence and -1 is padding: it ends a
            sequence, and no window reaches across it. An iterable may mix 1-D
            sequences and 2-D blocks of rows (such as batches of walks). A
            directory (str or path) holds ``.npy`` shards of rows, read in
            the order of their names, as
            :func:`dlkernels.distributed.write_walks` writes them.
            Parts and shards are read one at a time (twice: once to count the
            ids, then once per epoch), so shards larger than memory train;
            the result is that of one array of all the rows.
        vocab_size : int or None, keyword-only
            Number of ids (rows of :attr:`vectors`); default the largest id + 1.
        progress : bool, default False, keyword-only
            Show a tqdm progress bar (needs tqdm).

        Returns
        -------
        SkipGram
            ``self``, trained.

        Raises
        ------
        TypeError
            If ``sequences`` does not hold integers.
        ValueError
            If an id is ``>= vocab_size`` or negative other than -1 padding, no
            sequence holds two ids (nothing to train on), a shard cannot be
            read, or training diverged (NaN or infinite vectors: ``alpha``
            too large). The model is left as it was.
        """
        progress = check_bool(progress, "progress")
        if vocab_size is not None:
            vocab_size = check_count(vocab_size, "vocab_size", minimum=1,
                                     maximum=_corpus.MAX_VOCAB)
        corpus = _corpus.Corpus(sequences)
        # Per id: its count, and a float32 row of dim in each table trained.
        tables = 1 + (self.n_negatives > 0) + self.hs
        summary = corpus.scan(vocab_size, bytes_per_id=8 + 4 * self.dim * tables)
        n_threads = check_n_threads(self.n_threads)
        gen = check_rng(self.rng)
        self._fitted = self._train(corpus, summary, gen, n_threads, progress)
        return self

    def _train(self, corpus: _corpus.Corpus, summary: _corpus.Summary, gen: np.random.Generator,
               n_threads: int, progress: bool) -> dict[str, Any]:
        dim, counts, total = self.dim, summary.counts, summary.n_tokens
        vocab_size, n_chunks = counts.size, summary.n_chunks
        # word2vec's initialisation: inputs uniform in +-0.5/dim, outputs zero.
        syn0 = ((gen.random((vocab_size, dim), dtype=np.float32) - np.float32(0.5))
                / np.float32(dim))
        syn1neg = np.zeros((vocab_size if self.n_negatives else 1, dim), dtype=np.float32)
        table = NegativeSampler(counts, power=0.75).alias_table
        paths, labels, code_len, syn1 = _hs_arrays(counts, dim, self.hs)
        keep = _keep_probabilities(counts, self.sample)
        key = draw_key(gen)
        loss = np.zeros(n_chunks)
        pairs = np.zeros(n_chunks, dtype=np.int64)
        words = np.zeros(n_chunks, dtype=np.int64)
        history: list[float] = []
        trained_words = 0
        bar = _progress_bar(self.epochs * total) if progress else None
        try:
            for epoch in range(self.epochs):
                for batch in corpus.batches(summary):
                    c0, c1 = batch.first_chunk, batch.first_chunk + batch.n_chunks
                    _skipgram.train(syn0, syn1neg, syn1, batch.tokens, batch.offsets,
                                    batch.bounds, 0, batch.n_chunks, keep, table, paths, labels,
                                    code_len, self.window, self.n_negatives, self.hs, self.alpha,
                                    self.min_alpha, float(epoch * total + batch.first_token),
                                    float(self.epochs * total), batch.max_len, key,
                                    epoch * n_chunks + c0, loss[c0:c1], pairs[c0:c1],
                                    words[c0:c1], n_threads)
                    if bar is not None:
                        bar.update(int(batch.tokens.size))
                if (pairs < 0).any():
                    raise MemoryError("SkipGram.fit: a training thread ran out of memory")
                # Chunk order, so the sum does not depend on which thread ran what.
                history.append(float(loss.sum() / max(int(pairs.sum()), 1)))
                trained_words += int(words.sum())
        finally:
            if bar is not None:
                bar.close()
        for name, arr in (("vectors", syn0), ("output vectors", syn1neg), ("output vectors", syn1)):
            if not np.isfinite(arr).all() or not np.isfinite(history).all():
                raise ValueError(f"SkipGram.fit diverged: the {name} overflowed to NaN or "
                                 f"infinity (alpha={self.alpha} is far too large; word2vec "
                                 f"uses 0.025). The model is left as it was.")
        return {"vectors": syn0, "syn1neg": syn1neg, "syn1": syn1, "counts": counts,
                "loss_history": np.array(history), "trained_words": trained_words}

    # -- results -------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        if self._fitted is None:
            raise ValueError("this SkipGram is not fitted yet: call fit(sequences) first")
        return self._fitted

    @property
    @reads
    def vectors(self) -> NDArray[np.float32]:
        """The trained vectors, float32 of shape ``(vocab_size, dim)``."""
        return self._state()["vectors"]

    @property
    @reads
    def counts(self) -> IntArray:
        """Occurrences of each id in the training sequences."""
        return self._state()["counts"]

    @property
    @reads
    def loss_history(self) -> FloatArray:
        """Mean loss per (context, centre) pair, one value per epoch."""
        return self._state()["loss_history"]

    @property
    @reads
    def trained_words(self) -> int:
        """Ids trained on (after subsampling), summed over epochs."""
        return self._state()["trained_words"]

    @property
    @reads
    def vocab_size(self) -> int:
        """Number of ids (rows of :attr:`vectors`)."""
        return self._state()["vectors"].shape[0]

    @reads
    def most_similar(self, id: int, k: int = 10) -> tuple[IntArray, FloatArray]:
        """The ``k`` ids whose vectors have the largest cosine similarity to ``id``'s.

        Parameters
        ----------
        id : int
            An id in ``[0, vocab_size)``; it is left out of the answer.
        k : int, default 10
            How many to return (at most ``vocab_size - 1``).

        Returns
        -------
        ids : numpy.ndarray of int64
        similarities : numpy.ndarray of float64
            Both sorted by decreasing similarity (ties by increasing id).
        """
        vectors = self.vectors
        n = vectors.shape[0]
        id = check_count(id, "id")
        if id >= n:
            raise ValueError(f"id must lie in [0, {n}), got {id}")
        k = min(check_count(k, "k", minimum=1), n - 1)
        v = vectors.astype(np.float64)
        norms = np.linalg.norm(v, axis=1)
        norms[norms == 0] = 1.0
        sims = v @ v[id] / (norms * norms[id])
        sims[id] = -np.inf
        order = np.lexsort((np.arange(n), -sims))[:k]
        return order.astype(np.int64), sims[order]

    @reads
    def save_word2vec_format(self, path: PathLike, *, words: Sequence[str] | None = None) -> None:
        """Write the vectors in word2vec's text format (read by gensim and the C tool).

        The first line is ``"<vocab_size> <dim>"``; then one line per id: its
        word and its ``dim`` values, separated by single spaces.

        Parameters
        ----------
        path : str or os.PathLike
        words : sequence of str, optional, keyword-only
            The word written for each id (default the id itself); no spaces.
        """
        vectors = self.vectors
        n = vectors.shape[0]
        if words is None:
            words = [str(i) for i in range(n)]
        else:
            words = [str(w) for w in words]
            if len(words) != n:
                raise ValueError(f"words must have one entry per id ({n}), got {len(words)}")
            for i, w in enumerate(words):
                if not w or any(ch.isspace() for ch in w):
                    raise ValueError(f"words must be non-empty without whitespace, got {w!r} "
                                     f"at position {i}")
        # repr-exact float32: 9 significant digits round-trip.
        body = np.char.mod("%.9g", vectors)
        with open(path, "w", encoding="utf-8") as f:
            f.write(f"{n} {vectors.shape[1]}\n")
            for w, row in zip(words, body):
                f.write(w + " " + " ".join(row) + "\n")

    # -- persistence -----------------------------------------------------------------
    @reads
    def save(self, path: PathLike) -> None:
        """Write the hyper-parameters and the trained tables to an ``.npz`` file.

        Parameters
        ----------
        path : str or os.PathLike
            Where to write, exactly (no suffix is added).
        """
        state = self._state()
        save_arrays(path, "SkipGram", **{FILE_NAMES[name]: getattr(self, name) for name in _PARAMS},
                    vectors=state["vectors"], syn1neg=state["syn1neg"], syn1=state["syn1"],
                    counts=state["counts"], loss_history=state["loss_history"],
                    trained_words=state["trained_words"])

    @classmethod
    def load(cls, path: PathLike) -> SkipGram:
        """Read a model written by :meth:`save` (``rng`` and ``n_threads`` are defaults).

        Parameters
        ----------
        path : str or os.PathLike
            A file written by :meth:`SkipGram.save`.

        Raises
        ------
        dlkernels.FileFormatError
            (a ValueError) for any other file, a damaged one, or invalid contents.
        """
        with read_archive(path, "SkipGram") as archive:
            archive.expect(tuple(FILE_NAMES.values()) + _FITTED)
            params = read_params(archive, _PARAMS)
            model = cls(**params)
            model._fitted = read_fitted(archive, params)
        return model

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={getattr(self, name)!r}" for name in _PARAMS)
        return f"SkipGram({args})"


def read_params(archive: Archive, names: Iterable[str], prefix: str = "") -> dict[str, Any]:
    """Hyper-parameters from a file, each of its stored kind, validated as by the constructor."""
    return check_params(**{name: archive.scalar(prefix + FILE_NAMES[name], PARAM_KINDS[name])
                           for name in names})


def read_fitted(archive: Archive, params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The trained tables from a file, with shapes that agree with each other and ``params``."""
    counts = archive.array(prefix + "counts", "int64", (None,))
    if (counts < 0).any():
        raise ValueError(f"{prefix}counts holds a negative count")
    vocab, dim = counts.shape[0], params["dim"]
    hs_rows = vocab - 1 if params["hs"] and vocab >= 2 else 1
    fitted = {
        "vectors": archive.array(prefix + "vectors", "float32", (vocab, dim)),
        "syn1neg": archive.array(prefix + "syn1neg", "float32",
                                 (vocab if params["n_negatives"] else 1, dim)),
        "syn1": archive.array(prefix + "syn1", "float32", (hs_rows, dim)),
        "counts": counts,
        "loss_history": archive.array(prefix + "loss_history", "float64", (None,)),
        "trained_words": archive.scalar(prefix + "trained_words", int, low=0),
    }
    for name in ("vectors", "syn1neg", "syn1"):
        if not np.isfinite(fitted[name]).all():
            raise ValueError(f"{prefix}{name} holds NaN or infinite values")
    return fitted


def _keep_probabilities(counts: IntArray, sample: float) -> NDArray[np.float32]:
    """word2vec's subsampling: keep an id of count c with (sqrt(c/t) + 1) * t/c, t = sample * total.

    Computed as sqrt(t/c) + t/c, which neither overflows for a tiny ``sample``
    nor loses the cap at 1 for a huge one.
    """
    keep = np.ones(counts.size, dtype=np.float32)
    if sample > 0:
        threshold = sample * counts.sum()
        seen = counts > 0
        ratio = threshold / counts[seen].astype(np.float64)
        with np.errstate(over="ignore"):
            keep[seen] = np.minimum(np.sqrt(ratio) + ratio, 1.0)
    return keep


def _hs_arrays(counts: IntArray, dim: int, hs: bool
               ) -> tuple[NDArray[np.int32], NDArray[np.float32], NDArray[np.int32],
                          NDArray[np.float32]]:
    """Huffman paths (int32), their labels 1 - bit (float32), code lengths and syn1."""
    if not hs or counts.size < 2:
        # The kernel needs non-empty arrays; lengths 0 mean "nothing to train".
        return (np.zeros((counts.size, 1), dtype=np.int32), np.zeros((counts.size, 1), dtype=np.float32),
                np.zeros(counts.size, dtype=np.int32), np.zeros((1, dim), dtype=np.float32))
    tree = huffman_tree(counts)
    paths = np.ascontiguousarray(np.maximum(tree.paths, 0), dtype=np.int32)
    labels = np.ascontiguousarray(1 - np.maximum(tree.bits, 0), dtype=np.float32)
    syn1 = np.zeros((tree.n_internal, dim), dtype=np.float32)
    return paths, labels, tree.lengths.astype(np.int32), syn1


def _progress_bar(total_words: int):
    from tqdm.auto import tqdm

    return tqdm(total=total_words, unit="word", unit_scale=True, desc="SkipGram")
