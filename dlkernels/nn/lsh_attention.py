"""Shared-QK attention restricted by angular LSH (Kitaev et al., ICLR 2020, "Reformer")."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from dlkernels._lib.array_types import RngLike
from dlkernels._lib.random import check_rng
from dlkernels._lib.validation import check_bool, check_count

__all__ = ["LSHAttention"]

# A token's score for itself: far below any real score, so it counts only when
# nothing else is available, yet finite (a row never becomes all -inf) and
# representable in float16.
SELF_SCORE = -5e4


class LSHAttention(nn.Module):
    """Shared-QK attention over hash buckets: O(n · bucket_size) per round instead of O(n²).

    Each token's vector serves as its query and, normalised, as its key. Each
    round hashes the tokens with a fresh random rotation (angular LSH: bucket =
    the argmax of ``[xR, -xR]``), sorts them by bucket (then position), cuts
    the sorted sequence into chunks of ``bucket_size`` and lets every token
    attend to the tokens of its chunk and of the chunk before it. The rounds'
    outputs are combined with weights ``softmax`` of their log-sum-exps, i.e.
    each round's share is the mass of the keys it found. A token attends to
    itself only when nothing else is available.

    Parameters
    ----------
    bucket_size : int, default 64
        Tokens per chunk (and the average number per hash bucket: a
        sequence of n tokens is hashed into about ``n / bucket_size``
        buckets, rounded up to an even number).
    n_hashes : int, default 4
        Hashing rounds (more: closer to full attention, proportionally slower).
    causal : bool, default False
        Mask keys that come after the query.
    rng : None, int or numpy.random.Generator
        Seeds the random rotations; each call draws new ones from it (as in
        training the Reformer), so the same seed gives the same sequence of
        outputs.

    Notes
    -----
    * The hash is angular LSH, the family of
      :class:`~dlkernels.neighbors.LSHIndex`'s cosine hashing: with two
      buckets, ``argmax [xr, -xr]`` is the sign of one random projection, its
      hash bit; with more, vectors at a small angle still collide with high
      probability, and the bucket index takes one argmax instead of one bit
      per hyperplane. It runs in torch on the input's device.
    * Scores are ``q_i . k_j / sqrt(dim)`` with ``k_j = q_j / |q_j|``.
    * A sequence whose length is not a multiple of ``bucket_size`` is padded
      with zero vectors that no token attends to; they are cut from the output.
    * A sequence of at most ``bucket_size`` tokens is one chunk: every token
      attends to every other, exactly full shared-QK attention (tested to 1e-5
      with gradients), and hashing is skipped.
    * The rotations are drawn on the CPU and moved to the input's device, so
      the same seed gives the same buckets on CPU and GPU (up to rounding ties).
    * Multi-head attention: fold the heads into the batch dimension.

    Examples
    --------
    >>> import torch
    >>> from dlkernels.nn import LSHAttention
    >>> attn = LSHAttention(bucket_size=32, n_hashes=2, rng=0)
    >>> qk, v = torch.randn(2, 1000, 16), torch.randn(2, 1000, 16)
    >>> attn(qk, v).shape
    torch.Size([2, 1000, 16])
    """

    bucket_size: int
    n_hashes: int
    causal: bool
    rng: np.random.Generator

    def __init__(self, bucket_size: int = 64, *, n_hashes: int = 4, causal: bool = False,
                 rng: RngLike = None) -> None:
        super().__init__()
        self.bucket_size = check_count(bucket_size, "bucket_size", minimum=1)
        self.n_hashes = check_count(n_hashes, "n_hashes", minimum=1)
        self.causal = check_bool(causal, "causal")
        self.rng = check_rng(rng)

    def forward(self, qk: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attention of every token over the tokens its hash buckets put near it.

        Parameters
        ----------
        qk : torch.Tensor, shape (batch, seq, dim)
            Shared queries and keys (heads folded into the batch).
        v : torch.Tensor, shape (batch, seq, dim_v)
            Values; same dtype and device as ``qk``.

        Returns
        -------
        torch.Tensor, shape (batch, seq, dim_v)

        Raises
        ------
        TypeError, ValueError
            Non-tensors, non-floating dtypes, wrong ranks, mismatched batch or
            sequence sizes, dtypes or devices, or an empty sequence.
        """
        _check_inputs(qk, v)
        b, n, d = qk.shape
        bs = self.bucket_size
        n_chunks = -(-n // bs)
        n_pad = n_chunks * bs
        if n_pad != n:
            qk = nn.functional.pad(qk, (0, 0, 0, n_pad - n))
            v = nn.functional.pad(v, (0, 0, 0, n_pad - n))
        if n_chunks == 1:
            order = torch.arange(n_pad, device=qk.device).expand(b, 1, n_pad)
        else:
            order = self._sorted_positions(qk, n, n_chunks)
        out = _attend_sorted(qk, v, order, n, bs, look_back=n_chunks > 1, causal=self.causal)
        return out[:, :n]

    def _sorted_positions(self, qk: torch.Tensor, n: int, n_chunks: int) -> torch.Tensor:
        """Positions sorted by (bucket, position) per round, ``(batch, n_hashes, n_pad)``."""
        b, n_pad, d = qk.shape
        half = (n_chunks + 1) // 2                       # n_buckets = 2 * half
        seed = int(self.rng.integers(2**63))
        gen = torch.Generator().manual_seed(seed)
        rot = torch.randn(d, self.n_hashes * half, generator=gen)
        rot = rot.to(device=qk.device, dtype=qk.dtype)
        proj = (qk.detach() @ rot).reshape(b, n_pad, self.n_hashes, half)
        # argmax of [xR, -xR]: the largest |component|, on the side of its sign.
        top = proj.abs().argmax(-1, keepdim=True)
        negative = proj.gather(-1, top).squeeze(-1) < 0
        buckets = top.squeeze(-1) + half * negative                       # (b, n_pad, H)
        if n_pad != n:
            buckets[:, n:] = 2 * half                    # padding sorts last
        buckets = buckets.transpose(1, 2)                                # (b, H, n_pad)
        return buckets.sort(dim=-1, stable=True).indices

    def extra_repr(self) -> str:
        return f"bucket_size={self.bucket_size}, n_hashes={self.n_hashes}, causal={self.causal}"


def _check_inputs(qk: torch.Tensor, v: torch.Tensor) -> None:
    for name, t in (("qk", qk), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
        if t.dim() != 3:
            raise ValueError(f"{name} must have shape (batch, seq, dim), got {tuple(t.shape)}")
    if qk.shape[:2] != v.shape[:2]:
        raise ValueError(f"qk and v must have the same batch and sequence sizes, got "
                         f"{tuple(qk.shape)} and {tuple(v.shape)}")
    if qk.dtype != v.dtype or qk.device != v.device:
        raise ValueError(f"qk and v must have the same dtype and device, got {qk.dtype} on "
                         f"{qk.device} and {v.dtype} on {v.device}")
    if qk.shape[1] == 0 or qk.shape[2] == 0:
        raise ValueError(f"qk must have at least one token and one feature, got "
                         f"{tuple(qk.shape)}")


def _attend_sorted(qk, v, order, n, bs, *, look_back, causal):
    """Chunked attention over the sorted order of each round, rounds combined.

    ``order`` ``(b, H, n_pad)``: the positions of each round in sorted order.
    Every chunk of ``bs`` consecutive sorted tokens attends to itself and (with
    ``look_back``) to the chunk before it in the same round (the first to the last).
    """
    b, n_pad, d = qk.shape
    H = order.shape[1]
    C = n_pad // bs
    device = qk.device
    # Rows of the flattened (b * n_pad) inputs in sorted order; each chunk's keys
    # and values are its own followed by those of the chunk before it.
    rows = (order + (torch.arange(b, device=device) * n_pad)[:, None, None]).reshape(-1)
    q = qk.reshape(b * n_pad, d).index_select(0, rows).reshape(b * H, C, bs, d)
    k = q / (torch.linalg.vector_norm(q, dim=3, keepdim=True).clamp_min(1e-12) * math.sqrt(d))
    vals = v.reshape(b * n_pad, -1).index_select(0, rows).reshape(b * H, C, bs, -1)
    if look_back:
        k = torch.cat([k, k.roll(1, dims=1)], 2)
        vals = torch.cat([vals, vals.roll(1, dims=1)], 2)
    q = q.reshape(b * H * C, bs, d)
    k = k.reshape(b * H * C, -1, d)
    vals = vals.reshape(b * H * C, k.shape[1], -1)
    width = k.shape[1]
    pos_k = order.reshape(b, H, C, bs)
    pos_k = torch.cat([pos_k, pos_k.roll(1, dims=2)], 3) if look_back else pos_k
    pos_k = pos_k.reshape(b * H * C, 1, width)
    hidden = pos_k >= n if n_pad != n else None                          # padding keys
    if causal:
        later = pos_k > pos_k[:, :, :bs].transpose(1, 2)
        hidden = later if hidden is None else hidden | later
    out, lse = _ChunkAttention.apply(q, k, vals, hidden)
    dv = out.shape[-1]
    if H == 1:
        weighted = out.reshape(b * n_pad, dv)
    else:
        # Each round's weight at a position: softmax over rounds of its lse.
        lse = lse.reshape(b, H, n_pad)
        rank = torch.empty_like(order).scatter_(2, order, torch.arange(
            n_pad, device=device).expand(b, H, n_pad))
        lse_by_pos = lse.gather(2, rank)
        weight = torch.softmax(lse_by_pos, dim=1).gather(2, order)        # sorted order
        weighted = (out.reshape(b, H, n_pad, dv) * weight[..., None]).reshape(-1, dv)
    result = torch.zeros(b * n_pad, dv, dtype=out.dtype, device=device)
    return result.index_add(0, rows, weighted).reshape(b, n_pad, dv)


class _ChunkAttention(torch.autograd.Function):
    """Softmax attention of each chunk's queries over its keys, with the log-sum-exp.

    ``q`` ``(B, bs, d)``, ``k`` ``(B, w, d)`` (already normalised and scaled),
    ``v`` ``(B, w, dv)``; ``hidden`` (bool, broadcast to ``(B, bs, w)``, or None)
    masks keys out; key ``i`` of a chunk is query ``i`` itself and scores
    :data:`SELF_SCORE`. Returns the outputs and ``lse`` ``(B, bs)``. The
    probabilities are kept for the backward pass, which is written out (two
    elementwise passes instead of autograd's chain of them).
    """

    @staticmethod
    def forward(ctx, q, k, v, hidden):
        ctx.set_materialize_grads(False)
        p = torch.bmm(q, k.transpose(1, 2))
        if hidden is not None:
            p.masked_fill_(hidden, -math.inf)
        p.diagonal(dim1=1, dim2=2).fill_(SELF_SCORE)
        peak = p.amax(2, keepdim=True)
        p.sub_(peak).exp_()
        total = p.sum(2, keepdim=True)
        p.div_(total)
        out = torch.bmm(p, v)
        ctx.save_for_backward(q, k, v, p, out)
        return out, (peak + total.log()).squeeze(2)

    @staticmethod
    def backward(ctx, grad_out, grad_lse):
        q, k, v, p, out = ctx.saved_tensors
        if grad_out is None:
            grad_out = torch.zeros_like(out)
        grad_v = torch.bmm(p.transpose(1, 2), grad_out)
        # d score = p * (d p - <grad_out, out> + grad_lse)
        shift = (grad_out * out).sum(2)
        if grad_lse is not None:
            shift = shift - grad_lse
        grad_s = torch.bmm(grad_out, v.transpose(1, 2)).sub_(shift[:, :, None]).mul_(p)
        grad_s.diagonal(dim1=1, dim2=2).zero_()          # the self score is a constant
        return torch.bmm(grad_s, k), torch.bmm(grad_s.transpose(1, 2), q), grad_v, None
