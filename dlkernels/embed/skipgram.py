"""word2vec's skip-gram: train dense vectors from integer id sequences."""

from __future__ import annotations

import numpy as np

from dlkernels._lib.persist import read_archive, save_arrays
from dlkernels._lib.random import check_rng, draw_key
from dlkernels._lib.threads import check_n_threads
from dlkernels._lib.validation import check_bool, check_count, check_real
from dlkernels.embed import _corpus, _skipgram
from dlkernels.huffman import huffman_tree
from dlkernels.sampling import NegativeSampler

__all__ = ["SkipGram"]

# Progress-bar updates per epoch: the kernel returns to Python this many times.
_PROGRESS_STEPS = 50
_PARAMS = ("dim", "window", "negative", "hs", "sample", "alpha", "min_alpha", "epochs")
# How each hyper-parameter is stored in a file.
PARAM_KINDS = {"dim": int, "window": int, "negative": int, "hs": bool, "sample": float,
               "alpha": float, "min_alpha": float, "epochs": int}
_FITTED = ("vectors", "syn1neg", "syn1", "counts", "loss_history", "trained_words")


def check_params(dim, window, negative, hs, sample, alpha, min_alpha, epochs) -> dict:
    """The validated hyper-parameters of :class:`SkipGram` (shared with Node2Vec)."""
    hs = check_bool(hs, "hs")
    negative = check_count(negative, "negative", minimum=0 if hs else 1)
    params = {
        "dim": check_count(dim, "dim", minimum=1),
        "window": check_count(window, "window", minimum=1),
        "negative": negative,
        "hs": hs,
        "sample": check_real(sample, "sample", low=0.0),
        "alpha": check_real(alpha, "alpha", low=0.0, low_open=True),
        "min_alpha": check_real(min_alpha, "min_alpha", low=0.0),
        "epochs": check_count(epochs, "epochs", minimum=1),
    }
    if params["min_alpha"] > params["alpha"]:
        raise ValueError(f"min_alpha must be <= alpha={params['alpha']}, got {params['min_alpha']}")
    return params


class SkipGram:
    """Skip-gram word vectors (Mikolov et al., 2013), trained by lock-free parallel SGD.

    Each id of a sequence predicts the ids around it, up to ``window`` places
    away. The output layer is negative sampling (``negative`` noise ids drawn
    from the unigram counts raised to 0.75), hierarchical softmax over the
    Huffman tree of the counts (``hs=True``), or both. Frequent ids are
    subsampled and the learning rate decays linearly from ``alpha`` to
    ``min_alpha`` over training.

    Parameters
    ----------
    dim : int, default 128
        Vector size.
    window : int, default 5
        Largest distance between a centre id and its context; each centre draws
        its window size uniformly from ``1 .. window`` as word2vec does.
    negative : int, default 5
        Noise ids per centre word (shared by its whole window; see Notes).
        0 is allowed only with ``hs=True``.
    hs : bool, default False
        Also train a hierarchical softmax over the Huffman tree of the counts.
    sample : float, default 1e-3
        Subsampling threshold: an id with corpus frequency ``f`` is kept with
        probability ``(sqrt(f / sample) + 1) * sample / f`` (capped at 1).
        0 keeps every id. On a small vocabulary, where every id is frequent
        (a graph of a few hundred nodes), 1e-3 drops many occurrences: use a
        smaller value or 0 there.
    alpha, min_alpha : float, default 0.025 and 1e-4
        Learning rate at the start and at the end of training (``alpha > 0``).
    epochs : int, default 1
        Passes over the sequences.
    rng : None, int or numpy.random.Generator
        Seeds the initial vectors and every random draw of training.
    n_threads : int or None
        Training threads (None: OpenMP's default).

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
    so the draws are the same at any ``n_threads``. With ``n_threads=1`` the
    vectors are exactly reproducible. With more threads, the threads update the
    shared tables without locks (hogwild), and the order in which their updates
    land varies from run to run: the vectors then differ in their low bits and
    are equally good, but not bitwise equal.

    Examples
    --------
    >>> import numpy as np
    >>> from dlkernels.embed import SkipGram
    >>> walks = np.array([[0, 1, 2, 0, 1, 2], [3, 4, 5, 3, 4, 5]] * 200)
    >>> model = SkipGram(dim=16, window=2, sample=0, epochs=3, rng=0, n_threads=1).fit(walks)
    >>> model.vectors.shape
    (6, 16)
    >>> bool(set(model.most_similar(0, topn=2)[0].tolist()) == {1, 2})
    True
    """

    def __init__(self, dim: int = 128, window: int = 5, negative: int = 5, hs: bool = False,
                 sample: float = 1e-3, alpha: float = 0.025, min_alpha: float = 1e-4,
                 epochs: int = 1, rng=None, n_threads: int | None = None):
        params = check_params(dim, window, negative, hs, sample, alpha, min_alpha, epochs)
        check_n_threads(n_threads)
        if rng is not None:
            check_rng(rng)  # refuse a bad rng now; the Generator itself is made at fit
        for name, value in params.items():
            setattr(self, name, value)
        self.rng = rng
        self.n_threads = n_threads
        self._fitted = None

    # -- training ------------------------------------------------------------------
    def fit(self, sequences, vocab_size: int | None = None, progress: bool = False) -> SkipGram:
        """Train vectors on ``sequences`` (from scratch) and return the model.

        Parameters
        ----------
        sequences : 2-D integer array, or iterable of 1-D integer arrays
            Id sequences, e.g. random walks on a graph. In a 2-D array (or
            tensor) each row is a sequence and -1 is padding: it ends a
            sequence, and no window reaches across it.
        vocab_size : int or None
            Number of ids (rows of :attr:`vectors`); default the largest id + 1.
        progress : bool, default False
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
            If an id is ``>= vocab_size`` or negative other than -1 padding, or
            no sequence holds two ids (nothing to train on). The model is left
            as it was.
        """
        progress = check_bool(progress, "progress")
        if vocab_size is not None:
            vocab_size = check_count(vocab_size, "vocab_size", minimum=1)
            if vocab_size > _corpus.MAX_VOCAB:
                raise ValueError(f"vocab_size must be <= {_corpus.MAX_VOCAB}, got {vocab_size}")
        tokens, offsets, vocab_size = _corpus.split(_corpus.flatten(sequences), vocab_size)
        n_threads = check_n_threads(self.n_threads)
        gen = check_rng(self.rng)
        self._fitted = self._train(tokens, offsets, vocab_size, gen, n_threads, progress)
        return self

    def _train(self, tokens, offsets, vocab_size, gen, n_threads, progress) -> dict:
        dim, window = self.dim, self.window
        counts = np.bincount(tokens, minlength=vocab_size).astype(np.int64)
        total = int(tokens.size)
        # word2vec's initialisation: inputs uniform in +-0.5/dim, outputs zero.
        syn0 = ((gen.random((vocab_size, dim), dtype=np.float32) - np.float32(0.5))
                / np.float32(dim))
        syn1neg = np.zeros((vocab_size if self.negative else 1, dim), dtype=np.float32)
        table = NegativeSampler(counts, power=0.75).alias_table
        paths, labels, code_len, syn1 = _hs_arrays(counts, dim, self.hs)
        keep = _keep_probabilities(counts, self.sample)
        key = draw_key(gen)
        bounds = _corpus.chunk_bounds(offsets)
        n_chunks = bounds.size - 1
        max_len = int(np.diff(offsets).max())
        loss = np.zeros(n_chunks)
        pairs = np.zeros(n_chunks, dtype=np.int64)
        words = np.zeros(n_chunks, dtype=np.int64)
        history = []
        trained_words = 0
        bar = _progress_bar(self.epochs * total) if progress else None
        steps = np.unique(np.linspace(0, n_chunks, min(_PROGRESS_STEPS, n_chunks) + 1,
                                      dtype=np.int64)) if progress else np.array([0, n_chunks])
        try:
            for epoch in range(self.epochs):
                for c0, c1 in zip(steps[:-1].tolist(), steps[1:].tolist()):
                    _skipgram.train(syn0, syn1neg, syn1, tokens, offsets, bounds, c0, c1, keep,
                                    table, paths, labels, code_len, window, self.negative,
                                    self.hs, self.alpha, self.min_alpha, float(epoch * total),
                                    float(self.epochs * total), max_len, key,
                                    epoch * n_chunks, loss, pairs, words, n_threads)
                    if bar is not None:
                        bar.update(int(offsets[bounds[c1]] - offsets[bounds[c0]]))
                if not np.isfinite(loss).all():
                    raise MemoryError("SkipGram.fit: a training thread ran out of memory")
                # Chunk order, so the sum does not depend on which thread ran what.
                history.append(float(loss.sum() / max(int(pairs.sum()), 1)))
                trained_words += int(words.sum())
        finally:
            if bar is not None:
                bar.close()
        return {"vectors": syn0, "syn1neg": syn1neg, "syn1": syn1, "counts": counts,
                "loss_history": np.array(history), "trained_words": trained_words}

    # -- results -------------------------------------------------------------------
    def _state(self) -> dict:
        if self._fitted is None:
            raise ValueError("this SkipGram is not fitted yet: call fit(sequences) first")
        return self._fitted

    @property
    def vectors(self) -> np.ndarray:
        """The trained vectors, float32 of shape ``(vocab_size, dim)``."""
        return self._state()["vectors"]

    @property
    def counts(self) -> np.ndarray:
        """Occurrences of each id in the training sequences."""
        return self._state()["counts"]

    @property
    def loss_history(self) -> np.ndarray:
        """Mean loss per (context, centre) pair, one value per epoch."""
        return self._state()["loss_history"]

    @property
    def trained_words(self) -> int:
        """Ids trained on (after subsampling), summed over epochs."""
        return self._state()["trained_words"]

    @property
    def vocab_size(self) -> int:
        """Number of ids (rows of :attr:`vectors`)."""
        return self._state()["vectors"].shape[0]

    def most_similar(self, id: int, topn: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``topn`` ids whose vectors have the largest cosine similarity to ``id``'s.

        Parameters
        ----------
        id : int
            An id in ``[0, vocab_size)``; it is left out of the answer.
        topn : int, default 10
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
        topn = min(check_count(topn, "topn", minimum=1), n - 1)
        v = vectors.astype(np.float64)
        norms = np.linalg.norm(v, axis=1)
        norms[norms == 0] = 1.0
        sims = v @ v[id] / (norms * norms[id])
        sims[id] = -np.inf
        order = np.lexsort((np.arange(n), -sims))[:topn]
        return order.astype(np.int64), sims[order]

    def save_word2vec_format(self, path, words=None) -> None:
        """Write the vectors in word2vec's text format (read by gensim and the C tool).

        The first line is ``"<vocab_size> <dim>"``; then one line per id: its
        word and its ``dim`` values, separated by single spaces.

        Parameters
        ----------
        path : str or os.PathLike
        words : sequence of str, optional
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
    def save(self, path) -> None:
        """Write the hyper-parameters and the trained tables to an ``.npz`` file.

        Parameters
        ----------
        path : str or os.PathLike
            Where to write; numpy adds ``.npz`` if the name lacks it.
        """
        state = self._state()
        save_arrays(path, "SkipGram", **{name: getattr(self, name) for name in _PARAMS},
                    vectors=state["vectors"], syn1neg=state["syn1neg"], syn1=state["syn1"],
                    counts=state["counts"], loss_history=state["loss_history"],
                    trained_words=state["trained_words"])

    @classmethod
    def load(cls, path) -> SkipGram:
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
            archive.expect(_PARAMS + _FITTED)
            params = read_params(archive, _PARAMS)
            model = cls(**params)
            model._fitted = read_fitted(archive, params)
        return model

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={getattr(self, name)!r}" for name in _PARAMS)
        return f"SkipGram({args})"


def read_params(archive, names) -> dict:
    """Hyper-parameters from a file, each of its stored kind, validated as by the constructor."""
    return check_params(**{name: archive.scalar(name, PARAM_KINDS[name]) for name in names
                           if name in PARAM_KINDS})


def read_fitted(archive, params: dict, prefix: str = "") -> dict:
    """The trained tables from a file, with shapes that agree with each other and ``params``."""
    counts = archive.array(prefix + "counts", "int64", (None,))
    if (counts < 0).any():
        raise ValueError(f"{prefix}counts holds a negative count")
    vocab, dim = counts.shape[0], params["dim"]
    hs_rows = vocab - 1 if params["hs"] and vocab >= 2 else 1
    fitted = {
        "vectors": archive.array(prefix + "vectors", "float32", (vocab, dim)),
        "syn1neg": archive.array(prefix + "syn1neg", "float32",
                                 (vocab if params["negative"] else 1, dim)),
        "syn1": archive.array(prefix + "syn1", "float32", (hs_rows, dim)),
        "counts": counts,
        "loss_history": archive.array(prefix + "loss_history", "float64", (None,)),
        "trained_words": archive.scalar(prefix + "trained_words", int, low=0),
    }
    for name in ("vectors", "syn1neg", "syn1"):
        if not np.isfinite(fitted[name]).all():
            raise ValueError(f"{prefix}{name} holds NaN or infinite values")
    return fitted


def _keep_probabilities(counts: np.ndarray, sample: float) -> np.ndarray:
    """word2vec's subsampling: keep an id of count c with (sqrt(c/t) + 1) * t/c, t = sample * total."""
    keep = np.ones(counts.size, dtype=np.float32)
    if sample > 0:
        threshold = sample * counts.sum()
        seen = counts > 0
        c = counts[seen].astype(np.float64)
        keep[seen] = np.minimum((np.sqrt(c / threshold) + 1.0) * threshold / c, 1.0)
    return keep


def _hs_arrays(counts: np.ndarray, dim: int, hs: bool):
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
