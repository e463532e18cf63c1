"""Hierarchical softmax over a binary code tree (Morin & Bengio, 2005; word2vec)."""

from __future__ import annotations

import math
from typing import Literal, overload

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlkernels._lib.array_types import ArrayLike, Tensor
from dlkernels._lib.torch_checks import check_features, check_targets
from dlkernels._lib.torch_reduction import check_reduction, reduce_loss
from dlkernels._lib.validation import check_bool, check_count
from dlkernels.huffman import CodeTree, balanced_tree, huffman_tree
from dlkernels.nn._params import init_rows, make_rows
from dlkernels.nn._topk import check_k, shaped

__all__ = ["HierarchicalSoftmax"]

# Frontier nodes expanded per example and round by predict(): more than one per
# round keeps the number of (Python-level) rounds near the tree depth.
_EXPAND_PER_ROUND = 64


class HierarchicalSoftmax(nn.Module):
    """Softmax over ``n_classes`` as a walk down a binary tree of logistic decisions.

    Each internal node ``k`` of the tree holds a vector ``w_k`` and a bias
    ``b_k``; from ``x`` the walk goes right with probability
    ``sigmoid(w_k . x + b_k)`` and left otherwise, and a class's probability is
    the product along its path. The leaves' probabilities sum to 1 by
    construction, and one class costs O(depth) dot products instead of
    O(n_classes).

    Parameters
    ----------
    dim : int
        Size of each input vector.
    n_classes : int
        Number of classes (at least 2).
    counts : array-like or torch.Tensor, shape (n_classes,), optional
        Class frequencies: the tree is their Huffman tree (word2vec), so
        frequent classes have short paths. Without counts the tree is balanced
        (every path ``ceil(log2(n_classes))`` long or one shorter).
    bias : bool, default True
        Learn a bias per internal node.
    sparse : bool, default False
        Gradients of ``weight`` from :meth:`forward` as sparse tensors (as in
        :class:`torch.nn.Embedding`): only the visited nodes' rows. Use with an
        optimizer that accepts them (``torch.optim.SparseAdam``, ``SGD``).
    reduction : {"mean", "sum", "none"}, default "mean"
        How :meth:`forward` reduces the per-example losses.
    device, dtype
        Where the parameters live.

    Attributes
    ----------
    tree : dlkernels.huffman.CodeTree
    weight : torch.nn.Parameter, shape (n_classes - 1, dim)
    bias : torch.nn.Parameter or None, shape (n_classes - 1,)

    Notes
    -----
    :meth:`forward` costs O(L d) per example for the longest code length ``L``
    in the tree (paths are padded to it): one gather of the path nodes of all
    targets and one batched matrix product, no Python loop over examples.
    :meth:`log_prob` costs O(V d) per example (every internal node's decision,
    then one vectorised pass per tree level). :meth:`predict` runs an exact
    best-first search: see its documentation.

    Examples
    --------
    >>> import torch
    >>> from dlkernels.nn import HierarchicalSoftmax
    >>> hs = HierarchicalSoftmax(8, 1000, counts=torch.arange(1000, 0, -1))
    >>> x, y = torch.randn(4, 8), torch.tensor([0, 5, 999, 3])
    >>> hs(x, y).shape
    torch.Size([])
    >>> bool(torch.allclose(hs.log_prob(x).exp().sum(1), torch.ones(4)))
    True
    """

    dim: int
    n_classes: int
    tree: CodeTree
    sparse: bool
    reduction: str
    weight: nn.Parameter
    bias: nn.Parameter | None

    def __init__(self, dim: int, n_classes: int, *, counts: ArrayLike | Tensor | None = None,
                 bias: bool = True, sparse: bool = False, reduction: str = "mean",
                 device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.dim = check_count(dim, "dim", minimum=1)
        self.n_classes = check_count(n_classes, "n_classes", minimum=2)
        if counts is None:
            tree = balanced_tree(self.n_classes)
        else:
            tree = huffman_tree(counts)
            if tree.n_symbols != self.n_classes:
                raise ValueError(f"counts must have one entry per class: {tree.n_symbols} "
                                 f"counts for n_classes={self.n_classes}")
        self.tree = tree
        self.sparse = check_bool(sparse, "sparse")
        self.reduction = check_reduction(reduction)
        factory = {"device": device, "dtype": dtype}
        self.weight, self.bias = make_rows(self.n_classes - 1, self.dim, bias, factory)
        # The tree as buffers, so it follows .to(device) and lives in state_dict.
        # Padding: node 0 with sign 0, which the mask below removes.
        paths = np.where(tree.paths < 0, 0, tree.paths)
        signs = np.where(tree.bits < 0, 0, 2 * tree.bits.astype(np.int64) - 1)
        self.register_buffer("paths", torch.as_tensor(paths, device=device))
        self.register_buffer("signs", torch.as_tensor(signs, device=device).to(
            self.weight.dtype))
        self.register_buffer("child_nodes", torch.as_tensor(tree.children, device=device))
        # For log_prob: each node's parent and whether it is a right child.
        n = self.n_classes
        is_right = np.zeros(2 * n - 1, dtype=bool)
        is_right[tree.children[:, 1]] = True
        for name, value in (("node_parent", tree.parent[n:]), ("node_right", is_right[n:]),
                            ("leaf_parent", tree.parent[:n]), ("leaf_right", is_right[:n])):
            self.register_buffer(name, torch.as_tensor(value, device=device), persistent=False)
        self._levels = list(CodeTree._levels(tree.parent[n:]))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform(-1/sqrt(d), 1/sqrt(d)) weights (as nn.Linear) and zero biases."""
        init_rows(self.weight, self.bias)

    def _node_logits(self, x: torch.Tensor, nodes: torch.Tensor) -> torch.Tensor:
        """``w_k . x + b_k`` for the nodes ``nodes[i, j]`` of each row ``x[i]``."""
        w = F.embedding(nodes, self.weight, sparse=self.sparse)  # (n, m, d)
        z = torch.bmm(w, x.unsqueeze(2)).squeeze(2)
        if self.bias is not None:
            z = z + self.bias[nodes]  # dense gradient: one value per node, cheap
        return z

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood of the target classes.

        Parameters
        ----------
        input : torch.Tensor, shape (..., dim)
        target : torch.Tensor of int, shape (...)
            Class ids in ``[0, n_classes)``.

        Returns
        -------
        torch.Tensor
            The mean (or sum) of ``-log p(target | input)``, or one value per
            example (shape of ``target``) with ``reduction="none"``.

        Raises
        ------
        TypeError, ValueError, IndexError
            Wrong dtypes, shapes that do not match, or a target out of range.
        """
        flat = check_features(input, self.dim)
        t = check_targets(target, self.n_classes, input.shape[:-1])
        nodes = self.paths[t]                      # (n, L)
        signs = self.signs[t].to(flat.dtype)       # (n, L): +1 right, -1 left, 0 padding
        z = self._node_logits(flat, nodes)
        nll = -(F.logsigmoid(signs * z) * signs.abs()).sum(1)
        return reduce_loss(nll.reshape(target.shape), self.reduction)

    def log_prob(self, input: torch.Tensor) -> torch.Tensor:
        """The full log-distribution over classes, ``(..., n_classes)``; it sums to 1.

        Every internal node's decision is computed in one product, then the
        path log-probabilities are accumulated down the tree one level at a
        time (internal nodes are numbered breadth-first, so a level is a
        contiguous range). Costs O(V d) per example: meant for evaluation
        (perplexity, sampling), not for the training step.
        """
        flat = check_features(input, self.dim)
        z = F.linear(flat, self.weight, self.bias)               # (n, V-1)
        right, left = F.logsigmoid(z), F.logsigmoid(-z)
        V = self.n_classes

        def turn(parent: torch.Tensor, is_right: torch.Tensor) -> torch.Tensor:
            return torch.where(is_right, right[:, parent], left[:, parent])

        node_lp = z.new_zeros(flat.shape[0], V - 1)              # the root: log 1
        for start, stop in self._levels:
            parent = self.node_parent[start:stop]
            node_lp[:, start:stop] = node_lp[:, parent] + turn(parent, self.node_right[start:stop])
        out = node_lp[:, self.leaf_parent] + turn(self.leaf_parent, self.leaf_right)
        return out.reshape(*input.shape[:-1], V)

    @overload
    def predict(self, input: torch.Tensor, k: int = 1, *,
                return_log_prob: Literal[False] = False) -> torch.Tensor: ...
    @overload
    def predict(self, input: torch.Tensor, k: int = 1, *,
                return_log_prob: Literal[True]) -> tuple[torch.Tensor, torch.Tensor]: ...
    @overload
    def predict(self, input: torch.Tensor, k: int = 1, *,
                return_log_prob: bool) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]: ...

    @torch.no_grad()
    def predict(self, input: torch.Tensor, k: int = 1, *, return_log_prob: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The ``k`` most probable classes of each example, exactly, by best-first search.

        A path's probability only falls on the way down, so a subtree whose root
        is already less probable than the ``k``-th best class found so far can
        hold no better class and is never opened.

        Parameters
        ----------
        input : torch.Tensor, shape (..., dim)
        k : int, default 1
            At most ``n_classes``.
        return_log_prob : bool, default False
            Also return the classes' log-probabilities.

        Returns
        -------
        classes : torch.Tensor of int64, shape (..., k)
            Most probable first.
        log_prob : torch.Tensor, shape (..., k)
            Only with ``return_log_prob``.

        Notes
        -----
        All examples are searched together: each round takes, for every
        example, up to ``max(k, 64)`` of its most probable unopened nodes,
        computes their decisions in one batched product, merges the leaves
        reached into the running top-k and drops every open node that cannot
        beat the current ``k``-th best. It stops when no example has an open
        node left. The work is O(E d) per example for E opened nodes: about
        the tree depth times ``k`` on confident models, up to all ``V - 1``
        nodes when the distribution is flat (then :meth:`log_prob` plus
        ``topk`` costs the same). Ties between exactly equal probabilities
        are broken arbitrarily.
        """
        flat = check_features(input, self.dim)
        k = check_k(k, self.n_classes)
        n, V = flat.shape[0], self.n_classes
        dtype, device = flat.dtype, flat.device
        neg_inf = torch.tensor(-math.inf, dtype=dtype, device=device)
        best_lp = torch.full((n, k), -math.inf, dtype=dtype, device=device)
        best_id = torch.zeros((n, k), dtype=torch.long, device=device)
        open_node = torch.zeros((n, 1), dtype=torch.long, device=device)  # the root
        open_lp = torch.zeros((n, 1), dtype=dtype, device=device)
        per_round = max(k, _EXPAND_PER_ROUND)
        while open_lp.shape[1]:
            take = min(per_round, open_lp.shape[1])
            sel_lp, sel_pos = open_lp.topk(take, dim=1)
            sel_node = open_node.gather(1, sel_pos)
            rest = open_lp.scatter(1, sel_pos, -math.inf)
            z = self._node_logits(flat, sel_node)
            child_lp = torch.stack([sel_lp + F.logsigmoid(-z), sel_lp + F.logsigmoid(z)], 2)
            # A dead pick (-inf, padding) keeps -inf children.
            child_lp = torch.where(torch.isneginf(sel_lp).unsqueeze(2), neg_inf, child_lp)
            child = self.child_nodes[sel_node].reshape(n, -1)
            child_lp = child_lp.reshape(n, -1)
            is_leaf = child < V
            # Leaves reached join the running top k.
            cand_lp = torch.cat([best_lp, torch.where(is_leaf, child_lp, neg_inf)], 1)
            cand_id = torch.cat([best_id, torch.where(is_leaf, child, 0)], 1)
            best_lp, pos = cand_lp.topk(k, dim=1)
            best_id = cand_id.gather(1, pos)
            # Internal children join the open nodes; anything not above the k-th best goes.
            open_lp = torch.cat([rest, torch.where(is_leaf, neg_inf, child_lp)], 1)
            open_node = torch.cat([open_node, torch.where(is_leaf, 0, child - V)], 1)
            open_lp = torch.where(open_lp > best_lp[:, -1:], open_lp, neg_inf)
            width = int((open_lp > -math.inf).sum(1).max())
            open_lp, order = open_lp.topk(width, dim=1)
            open_node = open_node.gather(1, order)
        return shaped(best_id, best_lp, input.shape[:-1], return_log_prob)

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, n_classes={self.n_classes}, "
                f"max_depth={self.tree.max_length}, bias={self.bias is not None}, "
                f"sparse={self.sparse}, reduction={self.reduction!r}")
