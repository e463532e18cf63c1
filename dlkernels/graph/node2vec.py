"""node2vec: random walks on a graph, then skip-gram vectors of the nodes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from dlkernels._lib.array_types import ArrayLike, NDArray, PathLike, RngLike, Tensor
from dlkernels._lib.locks import reads, writes
from dlkernels._lib.persist import read_archive, save_arrays
from dlkernels._lib.random import check_rng
from dlkernels._lib.threads import check_n_threads
from dlkernels._lib.validation import check_bool
from dlkernels.embed import SkipGram
from dlkernels.embed.skipgram import FILE_NAMES, check_params, read_fitted, read_params
from dlkernels.graph.graph import Graph, read_node_ids
from dlkernels.graph.walks import check_walk_params, random_walks

__all__ = ["Node2Vec"]

_WALK_PARAMS = ("walk_length", "walks_per_node", "p", "q")
_SKIPGRAM_PARAMS = ("dim", "window", "n_negatives", "hs", "sample", "alpha", "min_alpha",
                    "epochs")


class Node2Vec:
    """Node embeddings by node2vec (Grover & Leskovec, KDD 2016).

    :func:`~dlkernels.graph.random_walks` with return parameter ``p`` and in-out
    parameter ``q``, then :class:`~dlkernels.embed.SkipGram` on the walks. The
    defaults are those of the reference implementation.

    Parameters
    ----------
    dim : int, default 128
        Vector size.
    walk_length : int, default 80
        Nodes per walk.
    walks_per_node : int, default 10
        Walks started from every node.
    p, q : float, default 1
        Return and in-out parameters of the walks, in ``[1e-9, 1e9]``.
    window : int, default 10
        Skip-gram context size.
    n_negatives, hs, sample, alpha, min_alpha, epochs
        As in :class:`~dlkernels.embed.SkipGram`.
    rng : None, int or numpy.random.Generator
        Seeds the walks and the training.
    n_threads : int or None
        Threads for both stages (None: OpenMP's default).

    Every parameter is keyword-only.

    Attributes
    ----------
    vectors : numpy.ndarray of float32, shape (n_nodes, dim)
        Row ``i`` embeds node ``i`` of the graph.
    node_ids : numpy.ndarray or None
        The graph's node labels (from :meth:`Graph.read_edgelist`), if it had any.
    skipgram : SkipGram
        The trained skip-gram model (loss history, :meth:`~SkipGram.most_similar`).

    Notes
    -----
    Thread safety: :meth:`fit` (a write) runs alone; :attr:`vectors`,
    :attr:`node_ids`, :attr:`skipgram` and the savers (reads) run concurrently
    and never see half of a fit.

    Examples
    --------
    >>> from dlkernels.graph import Graph, Node2Vec
    >>> two_triangles = Graph.from_edges([0, 1, 2, 3, 4, 5], [1, 2, 0, 4, 5, 3])
    >>> model = Node2Vec(dim=8, walk_length=20, walks_per_node=50, window=3, sample=0,
    ...                  rng=0, n_threads=1).fit(two_triangles)
    >>> model.vectors.shape
    (6, 8)
    >>> sorted(model.skipgram.most_similar(0, k=2)[0].tolist())
    [1, 2]
    """

    dim: int
    walk_length: int
    walks_per_node: int
    p: float
    q: float
    window: int
    n_negatives: int
    hs: bool
    sample: float
    alpha: float
    min_alpha: float
    epochs: int
    rng: RngLike
    n_threads: int | None

    def __init__(self, *, dim: int = 128, walk_length: int = 80, walks_per_node: int = 10,
                 p: float = 1.0, q: float = 1.0, window: int = 10, n_negatives: int = 5,
                 hs: bool = False, sample: float = 1e-3, alpha: float = 0.025,
                 min_alpha: float = 1e-4, epochs: int = 1, rng: RngLike = None,
                 n_threads: int | None = None) -> None:
        params = check_params(dim=dim, window=window, n_negatives=n_negatives, hs=hs,
                              sample=sample, alpha=alpha, min_alpha=min_alpha, epochs=epochs)
        params.update(check_walk_params(walk_length, walks_per_node, p, q, minimum_walks=1))
        check_n_threads(n_threads)
        if rng is not None:
            check_rng(rng)
        for name, value in params.items():
            setattr(self, name, value)
        self.rng = rng
        self.n_threads = n_threads
        # (SkipGram, node_ids): swapped in whole by fit
        self._fitted: tuple[SkipGram, NDArray[Any] | None] | None = None

    @writes
    def fit(self, graph: Graph, *, walks: ArrayLike | Tensor | Iterable[ArrayLike | Tensor] | PathLike | None = None,
            progress: bool = False) -> Node2Vec:
        """Walk ``graph`` and train the node vectors; returns the model.

        Parameters
        ----------
        graph : Graph
        walks : None, iterable of walk arrays, or a directory, keyword-only
            Walks made elsewhere (for instance on a cluster by
            :func:`dlkernels.distributed.write_walks`) to train on instead of
            walking here, in any form :meth:`SkipGram.fit` reads; a directory
            of shards is streamed, so walks larger than memory train. Their ids
            must be nodes of ``graph``.
        progress : bool, default False, keyword-only
            Progress bars for the walks and the training (needs tqdm).

        Returns
        -------
        Node2Vec
            ``self``; the embeddings are :attr:`vectors`.

        Raises
        ------
        TypeError
            If ``graph`` is not a :class:`Graph`.
        ValueError
            If the walks hold nothing to train on (a graph without edges), or
            would not fit in memory. The model is left as it was.
        """
        if not isinstance(graph, Graph):
            raise TypeError(f"graph must be a dlkernels.graph.Graph, got {type(graph).__name__}")
        progress = check_bool(progress, "progress")
        gen = check_rng(self.rng)
        if walks is None:
            walks = random_walks(graph, self.walk_length, self.walks_per_node, p=self.p,
                                 q=self.q, rng=gen, n_threads=self.n_threads, progress=progress)
        model = SkipGram(**{name: getattr(self, name) for name in _SKIPGRAM_PARAMS}, rng=gen,
                         n_threads=self.n_threads)
        try:
            model.fit(walks, vocab_size=graph.n_nodes, progress=progress)
        except ValueError as exc:
            if "nothing to train on" not in str(exc):
                raise
            raise ValueError(f"graph has nothing to train on: its walks never take a step "
                             f"({graph.n_edges} edges)") from exc
        self._fitted = (model, graph.node_ids)
        return self

    @writes
    def fit_transform(self, graph: Graph, *,
                      walks: ArrayLike | Tensor | Iterable[ArrayLike | Tensor] | PathLike | None = None,
                      progress: bool = False) -> NDArray[np.float32]:
        """:meth:`fit`, then return :attr:`vectors` (of this fit, whatever other threads do)."""
        return self.fit(graph, walks=walks, progress=progress).vectors

    def _state(self) -> tuple[SkipGram, NDArray[Any] | None]:
        if self._fitted is None:
            raise ValueError("this Node2Vec is not fitted yet: call fit(graph) first")
        return self._fitted

    @property
    @reads
    def skipgram(self) -> SkipGram:
        """The trained skip-gram model."""
        return self._state()[0]

    @property
    @reads
    def node_ids(self) -> NDArray[Any] | None:
        """The graph's node labels, or None (or not fitted yet)."""
        return None if self._fitted is None else self._fitted[1]

    @property
    @reads
    def vectors(self) -> NDArray[np.float32]:
        """Node vectors, float32 of shape ``(n_nodes, dim)``."""
        return self._state()[0].vectors

    @reads
    def save_word2vec_format(self, path: PathLike) -> None:
        """Write the vectors in word2vec's text format, one line per node, named by
        its label in :attr:`node_ids` (or its index)."""
        skipgram, node_ids = self._state()
        words = None if node_ids is None else [str(x) for x in node_ids]
        skipgram.save_word2vec_format(path, words=words)

    @reads
    def save(self, path: PathLike) -> None:
        """Write the parameters, node labels and trained tables to an ``.npz`` file.

        Parameters
        ----------
        path : str or os.PathLike
            Where to write, exactly (no suffix is added).
        """
        skipgram, node_ids = self._state()
        state = skipgram._fitted
        extra = {} if node_ids is None else {"node_ids": np.asarray(node_ids)}
        save_arrays(path, "Node2Vec", **{name: getattr(self, name) for name in _WALK_PARAMS},
                    **{FILE_NAMES[name]: getattr(self, name) for name in _SKIPGRAM_PARAMS},
                    **{f"skipgram_{k}": v for k, v in state.items()}, **extra)

    @classmethod
    def load(cls, path: PathLike) -> Node2Vec:
        """Read a model written by :meth:`save`.

        Parameters
        ----------
        path : str or os.PathLike

        Raises
        ------
        dlkernels.FileFormatError
            (a ValueError) for any other file, a damaged one, or invalid contents.
        """
        with read_archive(path, "Node2Vec") as archive:
            fitted_names = [f"skipgram_{name}" for name in ("vectors", "syn1neg", "syn1", "counts",
                                                            "loss_history", "trained_words")]
            archive.expect(_WALK_PARAMS + tuple(FILE_NAMES[n] for n in _SKIPGRAM_PARAMS)
                           + tuple(fitted_names), optional=["node_ids"])
            sg_params = read_params(archive, _SKIPGRAM_PARAMS)
            walk_params = {name: archive.scalar(name, int if name.startswith("walk") else float)
                           for name in _WALK_PARAMS}
            model = cls(**walk_params, **sg_params)
            skipgram = SkipGram(**sg_params)
            skipgram._fitted = read_fitted(archive, sg_params, prefix="skipgram_")
            node_ids = read_node_ids(archive, skipgram.vocab_size) \
                if "node_ids" in archive.members else None
        model._fitted = (skipgram, node_ids)
        return model

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={getattr(self, name)!r}"
                         for name in ("dim",) + _WALK_PARAMS + _SKIPGRAM_PARAMS[1:])
        return f"Node2Vec({args})"
