"""Code trellises for BinaryCodeSoftmax: the codewords of the integers 0 .. n_codes - 1.

A class's code is an integer ``c < n_codes`` written in ``B = ceil(log2 n_codes)``
bits, most significant first. Those bits go through a rate-1/r convolutional
encoder (generators ``g_1 .. g_r``, constraint length K, K - 1 zero tail bits);
the plain binary code is the case ``generators=(1,)`` (K = 1, r = 1: each bit is
sent as it is). Each output bit gets its own sigmoid, and a codeword's
log-probability is the sum of its bits' log-probabilities.

The trellis runs over the B + K - 1 input bits. Its state is the encoder's
register (the last K - 1 inputs) and one flag, "tight" while the bits so far
equal those of ``n_codes - 1`` and "less" once they fall below: a tight path may
not take a bit above the bound's, so the paths of the trellis are exactly the
codewords of ``0 .. n_codes - 1``. Over it:

* :meth:`Trellis.reduce` with ``logsumexp`` gives the log-normaliser over valid
  codewords (the forward algorithm, run backwards), with ``max`` the best
  completion of every state (Viterbi's recursion);
* :meth:`Trellis.top_k` runs a beam of width k over the input bits, scored by
  prefix + best completion: exact top-k (each kept prefix's bound is attained by
  a valid codeword, distinct prefixes give distinct codewords, so a prefix of a
  top-k codeword is never outranked by k others).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dlkernels._lib.array_types import IntArray, NDArray

__all__ = ["Trellis"]


class Trellis:
    """The trellis of the codewords of ``0 .. n_codes - 1`` (see the module docstring).

    Parameters
    ----------
    n_codes : int
        At least 2.
    generators : tuple of int
        Tap masks of the convolutional encoder: bit ``K - 1 - i`` of a generator
        taps the input of ``i`` steps ago (bit ``K - 1`` the current input).
        ``(1,)`` is the plain binary code.
    """

    n_codes: int
    generators: tuple[int, ...]
    constraint: int
    n_data: int
    n_steps: int
    rate: int
    n_out: int
    n_states: int
    start: int
    pattern: IntArray
    patterns: NDArray[np.float32]
    forbidden: NDArray[np.float32]
    next: IntArray
    taps: IntArray

    def __init__(self, n_codes: int, generators: tuple[int, ...]) -> None:
        self.n_codes = n_codes
        self.generators = tuple(int(g) for g in generators)
        self.constraint = K = max(g.bit_length() for g in self.generators)
        self.n_data = max(1, (n_codes - 1).bit_length())        # B
        self.n_steps = T = self.n_data + K - 1
        self.rate = r = len(self.generators)
        self.n_out = T * r
        R = 1 << (K - 1)                                          # registers
        self.n_states = S = 2 * R                                 # flag * R + register
        self.start = 0                                            # tight, register 0
        reg = np.arange(R)
        window = (np.arange(2)[None, :] << (K - 1)) | reg[:, None]          # (R, 2)
        emit = np.stack([_parity(window & g) for g in self.generators], -1)  # (R, 2, r)
        # The r bits a transition sends, as one pattern number sum_j bit_j 2^j.
        pattern = (emit << np.arange(r)).sum(-1)
        self.pattern = np.concatenate([pattern, pattern]).astype(np.int64)  # (S, 2)
        self.patterns = ((np.arange(2**r)[:, None] >> np.arange(r)) & 1).astype(np.float32)
        next_reg = window >> 1
        bound = n_codes - 1
        nxt = np.full((T, S, 2), -1, dtype=np.int64)             # -1: no such transition
        for t in range(T):
            if t < self.n_data:
                c = (bound >> (self.n_data - 1 - t)) & 1
                for u in range(2):
                    nxt[t, R:, u] = R + next_reg[:, u]           # less stays less
                    if u < c:
                        nxt[t, :R, u] = R + next_reg[:, u]       # tight falls below
                    elif u == c:
                        nxt[t, :R, u] = next_reg[:, u]           # tight stays tight
            else:                                                 # tail: zeros only
                nxt[t, :R, 0] = next_reg[:, 0]
                nxt[t, R:, 0] = R + next_reg[:, 0]
        # Forbidden transitions lead to the start state with a score of -inf.
        self.forbidden = np.where(nxt < 0, -np.inf, 0.0).astype(np.float32)
        self.next = np.maximum(nxt, 0)
        # Taps per window position l (input of K - 1 - l steps ago), for encode().
        self.taps = np.array([[(g >> l) & 1 for l in range(K)] for g in self.generators],
                             dtype=np.int64)                              # (r, K)

    # -- tensors on a device (cached per device) -----------------------------------------
    def tables(self, device: torch.device) -> dict[str, torch.Tensor]:
        """The tables as tensors on ``device`` (made once per device)."""
        key = str(device)
        cache = self.__dict__.setdefault("_tables", {})
        if key not in cache:
            cache[key] = {
                "next": torch.as_tensor(self.next, device=device),
                "forbidden": torch.as_tensor(self.forbidden, device=device),
                "pattern": torch.as_tensor(self.pattern, device=device),
                "patterns": torch.as_tensor(self.patterns, device=device),
                "taps": torch.as_tensor(self.taps, device=device),
                "shifts": torch.arange(self.n_data - 1, -1, -1, device=device),
            }
        return cache[key]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_tables", None)
        return state

    # -- codewords -----------------------------------------------------------------------
    def encode(self, codes: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The codeword bits of integer ``codes`` ``(n,)`` -> ``(n, n_out)`` of 0/1 in ``dtype``."""
        tab = self.tables(codes.device)
        bits = (codes[:, None] >> tab["shifts"]) & 1                      # (n, B), MSB first
        K = self.constraint
        padded = torch.nn.functional.pad(bits, (K - 1, K - 1))            # history + tail
        windows = padded.unfold(1, K, 1)                                  # (n, T, K)
        out = (windows[:, :, None, :] * tab["taps"]).sum(3) & 1           # (n, T, r)
        return out.reshape(codes.shape[0], self.n_out).to(dtype)

    def step_scores(self, z: torch.Tensor, lp0: torch.Tensor) -> torch.Tensor:
        """Log-probability of sending each r-bit pattern at each step, ``(n, T, 2^r)``,
        from bit logits ``z`` and ``lp0 = log sigmoid(-z)`` (a bit set to 1 adds
        ``lp0 + z``). A transition's score is that of its pattern."""
        n = z.shape[0]
        patterns = self.tables(z.device)["patterns"].to(z.dtype)         # (2^r, r)
        zr = z.reshape(n, self.n_steps, self.rate)
        base = lp0.reshape(n, self.n_steps, self.rate).sum(2, keepdim=True)
        return base + zr @ patterns.T

    def _transition(self, step: torch.Tensor, t: int, u: int,
                    tab: dict[str, torch.Tensor]) -> torch.Tensor:
        """Scores ``(n, S)`` of the transitions on bit ``u`` at step ``t`` (-inf: forbidden)."""
        return step.index_select(1, tab["pattern"][:, u]) + tab["forbidden"][t, :, u]

    def reduce(self, scores: torch.Tensor, how: str) -> list[torch.Tensor]:
        """``beta[t]``: ``(n, S)`` log-sum (``how="lse"``) or max (``"max"``) over the
        completions of each state at step t; ``beta[0][:, start]`` is the log-normaliser
        or the best codeword's log-probability (``scores`` from :meth:`step_scores`)."""
        tab = self.tables(scores.device)
        nxt = tab["next"]
        beta = scores.new_zeros((scores.shape[0], self.n_states))
        out = [beta]
        # Every state keeps at least one valid transition (bit 0 always is), so the
        # pairwise reductions never meet two -inf (whose logaddexp gradient is NaN).
        pair = torch.logaddexp if how == "lse" else torch.maximum
        steps = scores.unbind(1)
        for t in range(self.n_steps - 1, -1, -1):
            beta = pair(*(self._transition(steps[t], t, u, tab)
                          + beta.index_select(1, nxt[t, :, u]) for u in (0, 1)))
            out.append(beta)
        return out[::-1]

    def log_partition(self, scores: torch.Tensor) -> torch.Tensor:
        """``log sum_c p(codeword(c))`` over ``c < n_codes``, shape ``(n,)``."""
        return self.reduce(scores, "lse")[0][:, self.start]

    @torch.no_grad()
    def top_k(self, scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The k most probable valid codes ``(n, k)`` and their log-probabilities, best
        first (unnormalised: subtract :meth:`log_partition`)."""
        n = scores.shape[0]
        device = scores.device
        tab = self.tables(device)
        nxt = tab["next"]
        best = self.reduce(scores, "max")
        state = torch.full((n, k), self.start, dtype=torch.long, device=device)
        lp = scores.new_full((n, k), -torch.inf)
        lp[:, 0] = 0.0
        value = torch.zeros((n, k), dtype=torch.long, device=device)
        for t in range(self.n_steps):
            child = nxt[t][state]                                          # (n, k, 2)
            sent = scores[:, t].gather(1, tab["pattern"][state].reshape(n, -1))
            child_lp = (lp[:, :, None] + sent.reshape(n, k, 2)
                        + tab["forbidden"][t][state])
            bound = child_lp + best[t + 1].gather(1, child.reshape(n, -1)).reshape(n, k, 2)
            top, pick = bound.reshape(n, 2 * k).topk(k, dim=1)
            parent, u = pick // 2, pick % 2
            # A pick with no valid completion is dead: -inf, parked on the start state.
            dead = torch.isneginf(top)
            state = child.reshape(n, -1).gather(1, pick).masked_fill(dead, self.start)
            lp = child_lp.reshape(n, -1).gather(1, pick).masked_fill(dead, -torch.inf)
            value = value.gather(1, parent)
            if t < self.n_data:
                value = 2 * value + u
        return value, lp


def _parity(x: IntArray) -> IntArray:
    """Parity of the set bits of each (small, non-negative) integer."""
    x = x.copy()
    out = np.zeros_like(x)
    while x.any():
        out ^= x & 1
        x >>= 1
    return out
