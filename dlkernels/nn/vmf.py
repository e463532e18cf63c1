"""Von Mises-Fisher loss for continuous outputs (Kumar & Tsvetkov, ICLR 2019)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal, overload

import torch
import torch.nn.functional as F
from torch import nn

from dlkernels._lib.array_types import ArrayLike, RngLike, Tensor
from dlkernels._lib.torch_checks import check_features, check_finite, check_targets
from dlkernels._lib.torch_reduction import check_reduction, reduce_loss
from dlkernels._lib.validation import as_float_array, check_choice, check_real
from dlkernels.nn._bessel import vmf_neg_log_normalizer
from dlkernels.nn._topk import check_k, shaped

if TYPE_CHECKING:
    from dlkernels.neighbors import LSHIndex

__all__ = ["VonMisesFisherLoss"]

REGULARIZATIONS = (None, "norm", "dot")
# The regularisation strengths of the paper's experiments (lambda_1, lambda_2).
DEFAULT_STRENGTH = {"norm": 0.02, "dot": 0.1}
# method="auto" answers predict() through the LSH index from this many targets
# up, on the CPU (see the user guide for the measured cross-over).
LSH_MIN_CLASSES = 200_000
# Exact predict() scores at most this many (row, class) pairs at a time.
EXACT_BLOCK = 1 << 24


class VonMisesFisherLoss(nn.Module):
    """Negative log-likelihood of target embeddings under a von Mises-Fisher output.

    The model outputs a vector ``e_hat`` of size ``dim`` instead of a
    distribution over ``V`` classes; class ``w`` owns a fixed unit vector
    ``e(w)`` (pre-trained embeddings). The loss is the vMF negative
    log-density of ``e(w)`` with mean direction ``e_hat / |e_hat|`` and
    concentration ``kappa = |e_hat|``::

        NLLvMF(e_hat; e(w)) = -log C_m(|e_hat|) - e_hat . e(w),
        C_m(kappa) = kappa^(m/2 - 1) / ((2 pi)^(m/2) I_{m/2-1}(kappa)),   m = dim,

    so a training step costs O(dim) per example, whatever ``V``: no output
    matrix, no softmax. ``log C_m`` is computed stably (float64, uniform
    asymptotic expansion of the Bessel function plus a downward recurrence)
    for any ``m`` and ``kappa`` from 0 up; its derivative is the Bessel ratio
    ``I_{m/2} / I_{m/2-1}``, exact to about 1e-11.

    Parameters
    ----------
    embeddings : torch.Tensor or array-like, shape (n_classes, dim)
        One vector per class, finite and non-zero; they are normalised to unit
        length and kept as the buffer :attr:`embeddings` (not trained). At
        least 2 classes and ``dim >= 2``.
    regularization : {None, "norm", "dot"}, default None
        The paper's two regularised variants: ``"norm"`` adds
        ``strength * |e_hat|`` (keeps kappa from growing without bound);
        ``"dot"`` scales the dot product, ``-log C_m(|e_hat|) - strength *
        e_hat . e(w)``.
    strength : float, optional
        ``lambda_1`` (``"norm"``, default 0.02) or ``lambda_2`` (``"dot"``,
        default 0.1), the values of the paper's experiments.
    reduction : {"mean", "sum", "none"}, default "mean"
    device, dtype
        Where the embeddings live and their floating dtype (default: the
        tensor's own, else torch's default dtype).

    Attributes
    ----------
    embeddings : torch.Tensor, shape (n_classes, dim)
        Unit-length target embeddings.
    n_classes, dim : int

    Notes
    -----
    The model's outputs are not checked for NaN (as with torch's losses, a
    NaN output gives a NaN loss); a zero output is a valid, maximally
    uncertain prediction (``kappa = 0``, the uniform distribution on the
    sphere). :meth:`predict` ranks classes by cosine similarity, exactly or
    through an LSH index.

    Examples
    --------
    >>> import torch
    >>> from dlkernels.nn import VonMisesFisherLoss
    >>> loss = VonMisesFisherLoss(torch.randn(1000, 32))
    >>> out = torch.randn(8, 32, requires_grad=True)
    >>> loss(out, torch.arange(8)).backward()
    >>> loss.predict(out, k=3).shape
    torch.Size([8, 3])
    """

    regularization: str | None
    strength: float | None
    reduction: str
    embeddings: torch.Tensor
    n_classes: int
    dim: int

    def __init__(self, embeddings: ArrayLike | Tensor, *, regularization: str | None = None,
                 strength: float | None = None, reduction: str = "mean",
                 device: str | torch.device | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if regularization is not None:
            check_choice(regularization, "regularization", REGULARIZATIONS[1:])
        self.regularization = regularization
        if strength is not None and regularization is None:
            raise ValueError(f"strength applies to a regularization, got strength={strength!r} "
                             f"with regularization=None")
        self.strength = (None if regularization is None else
                         check_real(DEFAULT_STRENGTH[regularization] if strength is None
                                    else strength, "strength", low=0.0))
        self.reduction = check_reduction(reduction)
        table = _check_embeddings(embeddings, device, dtype)
        self.n_classes, self.dim = table.shape
        self.register_buffer("embeddings", table)
        # (LSHIndex, the embeddings' state it was built from)
        self._index: tuple[LSHIndex, tuple[Any, ...]] | None = None
        self._index_options: dict[str, Any] = {}

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The vMF negative log-likelihood of each target's embedding.

        Parameters
        ----------
        input : torch.Tensor, shape (..., dim)
            The model's output vectors ``e_hat`` (direction and concentration).
        target : torch.Tensor of int, shape (...)
            Class ids in ``[0, n_classes)``.

        Returns
        -------
        torch.Tensor
            A scalar, or the per-example losses (shape of ``target``) with
            ``reduction="none"``.
        """
        flat = check_features(input, self.dim)
        t = check_targets(target, self.n_classes, input.shape[:-1]).to(flat.device)
        kappa = torch.linalg.vector_norm(flat, dim=1)
        dot = (flat * F.embedding(t, self.embeddings).to(flat.dtype)).sum(1)
        if self.regularization == "dot":
            dot = self.strength * dot
        nll = vmf_neg_log_normalizer(kappa, self.dim) - dot
        if self.regularization == "norm":
            nll = nll + self.strength * kappa
        return reduce_loss(nll.reshape(target.shape), self.reduction)

    def build_index(self, *, n_tables: int = 32, n_bits: int | None = None,
                    rng: RngLike = None) -> LSHIndex:
        """Build (or rebuild) the cosine LSH index that :meth:`predict` uses for large V.

        Parameters
        ----------
        n_tables : int, default 32
            Hash tables of the :class:`dlkernels.neighbors.LSHIndex`.
        n_bits : int, optional
            Bits per table; default ``round(log2(n_classes / 16))`` clipped to
            [4, 20] (about 16 targets per bucket).
        rng : None, int or numpy.random.Generator
            Draws the hyperplanes.

        Returns
        -------
        dlkernels.neighbors.LSHIndex
            The index (of the unit embeddings, float32, on the CPU). If the
            embeddings change later (``load_state_dict``, an in-place edit),
            :meth:`predict` rebuilds it with the same options.
        """
        from dlkernels.neighbors import LSHIndex

        self._index_options = {"n_tables": n_tables, "n_bits": n_bits, "rng": rng}
        if n_bits is None:
            n_bits = min(20, max(4, round(math.log2(self.n_classes / 16))))
        index = LSHIndex(self.dim, metric="cosine", hashing="random", n_tables=n_tables,
                         n_bits=n_bits, rng=rng)
        index.add(self.embeddings.detach().float().cpu().numpy())
        self._index = (index, self._embeddings_state())
        return index

    def _embeddings_state(self) -> tuple[Any, ...]:
        """What identifies the embeddings' current values: storage and in-place version."""
        return (self.embeddings.data_ptr(), self.embeddings._version, str(self.embeddings.device))

    @overload
    def predict(self, input: torch.Tensor, k: int = 1, *, method: str = "auto",
                n_probes: int = 32, return_cosine: Literal[False] = False) -> torch.Tensor: ...
    @overload
    def predict(self, input: torch.Tensor, k: int = 1, *, method: str = "auto",
                n_probes: int = 32,
                return_cosine: Literal[True]) -> tuple[torch.Tensor, torch.Tensor]: ...
    @overload
    def predict(self, input: torch.Tensor, k: int = 1, *, method: str = "auto",
                n_probes: int = 32, return_cosine: bool
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]: ...

    @torch.no_grad()
    def predict(self, input: torch.Tensor, k: int = 1, *, method: str = "auto",
                n_probes: int = 32, return_cosine: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The ``k`` classes whose embeddings are nearest ``input`` by cosine.

        Parameters
        ----------
        input : torch.Tensor, shape (..., dim)
        k : int, default 1
            At most ``n_classes``.
        method : {"auto", "exact", "lsh"}, default "auto"
            ``"exact"``: one matrix product with all embeddings (blocked to
            bound memory) and ``topk``. ``"lsh"``: the candidates of the cosine
            :class:`~dlkernels.neighbors.LSHIndex` built by :meth:`build_index`
            (with its defaults on first use), re-ranked exactly; rows where it
            finds fewer than ``k`` candidates are answered exactly. ``"auto"``:
            ``"lsh"`` for CPU inputs from 200,000 classes up, else ``"exact"``.
        n_probes : int, default 32
            Multiprobe depth of the LSH query (more: higher recall, slower).
        return_cosine : bool, default False
            Also return the cosine similarities (0 for a zero input).

        Returns
        -------
        classes : torch.Tensor of int64, shape (..., k)
            Most similar first, on ``input``'s device.
        cosine : torch.Tensor, shape (..., k)
            Only with ``return_cosine``.
        """
        flat = check_features(input, self.dim)
        k = check_k(k, self.n_classes)
        check_choice(method, "method", ("auto", "exact", "lsh"))
        check_finite(flat, "input")
        if method == "auto":
            method = ("lsh" if flat.device.type == "cpu" and self.n_classes >= LSH_MIN_CLASSES
                      else "exact")
        if method == "lsh":
            cos, classes = self._predict_lsh(flat, k, n_probes)
        else:
            cos, classes = self._predict_exact(flat, k)
        return shaped(classes, cos, input.shape[:-1], return_cosine)

    def _predict_exact(self, flat: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        table = self.embeddings.to(flat.dtype)
        norms = torch.linalg.vector_norm(flat, dim=1, keepdim=True).clamp_min(
            torch.finfo(flat.dtype).tiny)
        rows = max(1, EXACT_BLOCK // self.n_classes)
        cos, ids = [], []
        for block in (flat / norms).split(rows):
            values, classes = F.linear(block, table).topk(k, dim=1)
            cos.append(values)
            ids.append(classes)
        if not cos:
            empty = flat.new_zeros((0, k))
            return empty, empty.long()
        return torch.cat(cos), torch.cat(ids)

    def _predict_lsh(self, flat: torch.Tensor, k: int,
                     n_probes: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._index is not None and self._index[1] == self._embeddings_state():
            index = self._index[0]
        else:
            index = self.build_index(**self._index_options)
        queries = flat.detach().float().cpu()
        zero = torch.linalg.vector_norm(queries, dim=1) == 0
        cos = torch.empty(flat.shape[0], k, dtype=flat.dtype, device=flat.device)
        classes = torch.empty(flat.shape[0], k, dtype=torch.long, device=flat.device)
        missing = zero.clone()
        if bool((~zero).any()):
            live = (~zero).nonzero().squeeze(1)
            dist, ids = index.query(queries[live].numpy(), k=k, n_probes=n_probes)
            dist, ids = torch.from_numpy(dist), torch.from_numpy(ids)
            short = (ids < 0).any(dim=1)
            missing[live[short]] = True
            keep = live[~short].to(flat.device)
            cos[keep] = (1.0 - dist[~short]).to(device=flat.device, dtype=flat.dtype)
            classes[keep] = ids[~short].to(flat.device)
        if bool(missing.any()):
            rows = missing.nonzero().squeeze(1).to(flat.device)
            cos[rows], classes[rows] = self._predict_exact(flat[rows], k)
        return cos, classes

    def extra_repr(self) -> str:
        reg = "" if self.regularization is None else (
            f", regularization={self.regularization!r}, strength={self.strength}")
        return (f"n_classes={self.n_classes}, dim={self.dim}{reg}, "
                f"reduction={self.reduction!r}")


def _check_embeddings(embeddings: ArrayLike | Tensor, device: str | torch.device | None,
                      dtype: torch.dtype | None) -> torch.Tensor:
    """The target table as unit rows: 2-D, at least 2 x 2, finite, no zero row."""
    if isinstance(embeddings, torch.Tensor):
        if not embeddings.is_floating_point():
            raise TypeError(f"embeddings must be a floating-point tensor, got dtype "
                            f"{embeddings.dtype}")
        table = embeddings.detach()
        if table.dim() != 2:
            raise ValueError(f"embeddings must be 2-dimensional (n_classes, dim), got shape "
                             f"{tuple(table.shape)}")
        check_finite(table, "embeddings")
    else:
        table = torch.as_tensor(as_float_array(embeddings, "embeddings", ndim=2))
        if dtype is None:
            dtype = torch.get_default_dtype()
    table = table.to(device=device, dtype=dtype)
    n_classes, dim = table.shape
    if n_classes < 2:
        raise ValueError(f"embeddings must have at least 2 rows (classes), got {n_classes}")
    if dim < 2:
        raise ValueError(f"embeddings must have at least 2 columns (dim), got {dim}")
    norms = torch.linalg.vector_norm(table.double(), dim=1)
    if not bool(torch.isfinite(norms).all()):
        raise ValueError("embeddings overflow their dtype when normalised; scale them down")
    zero = norms == 0
    if bool(zero.any()):
        raise ValueError(f"embeddings must have no zero row, got one at row "
                         f"{int(zero.nonzero()[0, 0])}")
    return (table.double() / norms[:, None]).to(table.dtype).contiguous()
