"""node2vec: random walks on a graph, then skip-gram vectors of the nodes."""

from __future__ import annotations

import numpy as np

from dlkernels._lib.persist import read_archive, save_arrays
from dlkernels._lib.random import check_rng
from dlkernels._lib.threads import check_n_threads
from dlkernels._lib.validation import check_bool, check_count, check_real
from dlkernels.embed import SkipGram
from dlkernels.embed.skipgram import check_params, read_fitted, read_params
from dlkernels.graph.graph import Graph, read_node_ids
from dlkernels.graph.walks import random_walks

__all__ = ["Node2Vec"]

_WALK_PARAMS = ("walk_length", "walks_per_node", "p", "q")
_SKIPGRAM_PARAMS = ("dim", "window", "negative", "hs", "sample", "alpha", "min_alpha", "epochs")


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
        Return and in-out parameters of the walks (``> 0``).
    window : int, default 10
        Skip-gram context size.
    negative, hs, sample, alpha, min_alpha, epochs
        As in :class:`~dlkernels.embed.SkipGram`.
    rng : None, int or numpy.random.Generator
        Seeds the walks and the training.
    n_threads : int or None
        Threads for both stages (None: OpenMP's default).

    Attributes
    ----------
    vectors : numpy.ndarray of float32, shape (n_nodes, dim)
        Row ``i`` embeds node ``i`` of the graph.
    node_ids : numpy.ndarray or None
        The graph's node labels (from :meth:`Graph.read_edgelist`), if it had any.
    skipgram : SkipGram
        The trained skip-gram model (loss history, :meth:`~SkipGram.most_similar`).

    Examples
    --------
    >>> from dlkernels.graph import Graph, Node2Vec
    >>> two_triangles = Graph.from_edges([0, 1, 2, 3, 4, 5], [1, 2, 0, 4, 5, 3])
    >>> model = Node2Vec(dim=8, walk_length=20, walks_per_node=50, window=3, sample=0,
    ...                  rng=0, n_threads=1).fit(two_triangles)
    >>> model.vectors.shape
    (6, 8)
    >>> sorted(model.skipgram.most_similar(0, topn=2)[0].tolist())
    [1, 2]
    """

    def __init__(self, dim: int = 128, walk_length: int = 80, walks_per_node: int = 10,
                 p: float = 1.0, q: float = 1.0, window: int = 10, negative: int = 5,
                 hs: bool = False, sample: float = 1e-3, alpha: float = 0.025,
                 min_alpha: float = 1e-4, epochs: int = 1, rng=None, n_threads: int | None = None):
        params = check_params(dim, window, negative, hs, sample, alpha, min_alpha, epochs)
        params["walk_length"] = check_count(walk_length, "walk_length", minimum=1)
        params["walks_per_node"] = check_count(walks_per_node, "walks_per_node", minimum=1)
        params["p"] = check_real(p, "p", low=0.0, low_open=True)
        params["q"] = check_real(q, "q", low=0.0, low_open=True)
        check_n_threads(n_threads)
        if rng is not None:
            check_rng(rng)
        for name, value in params.items():
            setattr(self, name, value)
        self.rng = rng
        self.n_threads = n_threads
        self.skipgram = None
        self.node_ids = None

    def fit(self, graph: Graph, progress: bool = False) -> Node2Vec:
        """Walk ``graph`` and train the node vectors; returns the model.

        Parameters
        ----------
        graph : Graph
        progress : bool, default False
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
            If the walks hold nothing to train on (a graph without edges).
        """
        if not isinstance(graph, Graph):
            raise TypeError(f"graph must be a dlkernels.graph.Graph, got {type(graph).__name__}")
        progress = check_bool(progress, "progress")
        gen = check_rng(self.rng)
        walks = random_walks(graph, self.walk_length, self.walks_per_node, self.p, self.q,
                             rng=gen, n_threads=self.n_threads, progress=bool(progress))
        model = SkipGram(**{name: getattr(self, name) for name in _SKIPGRAM_PARAMS}, rng=gen,
                         n_threads=self.n_threads)
        try:
            model.fit(walks, vocab_size=graph.n_nodes, progress=bool(progress))
        except ValueError as exc:
            raise ValueError(f"graph has nothing to train on: its walks never take a step "
                             f"({graph.n_edges} edges)") from exc
        self.skipgram = model
        self.node_ids = graph.node_ids
        return self

    def fit_transform(self, graph: Graph, progress: bool = False) -> np.ndarray:
        """:meth:`fit`, then return :attr:`vectors`."""
        return self.fit(graph, progress=progress).vectors

    @property
    def vectors(self) -> np.ndarray:
        """Node vectors, float32 of shape ``(n_nodes, dim)``."""
        if self.skipgram is None:
            raise ValueError("this Node2Vec is not fitted yet: call fit(graph) first")
        return self.skipgram.vectors

    def save_word2vec_format(self, path) -> None:
        """Write the vectors in word2vec's text format, one line per node, named by
        its label in :attr:`node_ids` (or its index)."""
        words = None if self.node_ids is None else [str(x) for x in self.node_ids]
        if self.skipgram is None:
            raise ValueError("this Node2Vec is not fitted yet: call fit(graph) first")
        self.skipgram.save_word2vec_format(path, words=words)

    def save(self, path) -> None:
        """Write the parameters, node labels and trained tables to an ``.npz`` file.

        Parameters
        ----------
        path : str or os.PathLike
        """
        if self.skipgram is None:
            raise ValueError("this Node2Vec is not fitted yet: call fit(graph) first")
        state = self.skipgram._fitted
        extra = {} if self.node_ids is None else {"node_ids": np.asarray(self.node_ids)}
        save_arrays(path, "Node2Vec", **{name: getattr(self, name) for name in _WALK_PARAMS},
                    **{name: getattr(self, name) for name in _SKIPGRAM_PARAMS},
                    **{f"skipgram_{k}": v for k, v in state.items()}, **extra)

    @classmethod
    def load(cls, path) -> Node2Vec:
        """Read a model written by :meth:`save`.

        Parameters
        ----------
        path : str or os.PathLike
        """
        with read_archive(path, "Node2Vec") as archive:
            fitted_names = [f"skipgram_{name}" for name in ("vectors", "syn1neg", "syn1", "counts",
                                                            "loss_history", "trained_words")]
            archive.expect(_WALK_PARAMS + _SKIPGRAM_PARAMS + tuple(fitted_names),
                           optional=["node_ids"])
            sg_params = read_params(archive, _SKIPGRAM_PARAMS)
            walk_params = {name: archive.scalar(name, int if name.startswith("walk") else float)
                           for name in _WALK_PARAMS}
            model = cls(**walk_params, **sg_params)
            skipgram = SkipGram(**sg_params)
            skipgram._fitted = read_fitted(archive, sg_params, prefix="skipgram_")
            if "node_ids" in archive.members:
                model.node_ids = read_node_ids(archive, skipgram.vocab_size)
        model.skipgram = skipgram
        return model

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={getattr(self, name)!r}"
                         for name in ("dim",) + _WALK_PARAMS + _SKIPGRAM_PARAMS[1:])
        return f"Node2Vec({args})"
