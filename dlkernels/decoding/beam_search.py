"""Beam search vectorised over batch items and beams."""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, NamedTuple

import torch

from dlkernels._lib.validation import check_count

__all__ = ["beam_search", "BeamSearchOutput", "map_state"]


class BeamSearchOutput(NamedTuple):
    """What :func:`beam_search` returns.

    Attributes
    ----------
    sequences : torch.Tensor of int64, shape (batch_size, num_return, max_length)
        Generated tokens (BOS not included, EOS included when produced), best
        first, padded with ``pad_id`` after ``lengths``.
    scores : torch.Tensor, shape (batch_size, num_return)
        ``sum of log-probabilities / length ** length_penalty``.
    lengths : torch.Tensor of int64, shape (batch_size, num_return)
        Generated tokens of each sequence, EOS included.
    """

    sequences: torch.Tensor
    scores: torch.Tensor
    lengths: torch.Tensor


def map_state(fn: Callable[[torch.Tensor, str], torch.Tensor], state: Any,
              path: str = "state") -> Any:
    """Apply ``fn(tensor, path)`` to every tensor of a nested dict/list/tuple state.

    Named tuples keep their type; other leaves (ints, None, strings) are kept as they are.
    """
    if isinstance(state, torch.Tensor):
        return fn(state, path)
    if isinstance(state, dict):
        return type(state)((k, map_state(fn, v, f"{path}[{k!r}]")) for k, v in state.items())
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        return type(state)(*(map_state(fn, v, f"{path}.{f}") for f, v in zip(state._fields, state)))
    if isinstance(state, (list, tuple)):
        return type(state)(map_state(fn, v, f"{path}[{i}]") for i, v in enumerate(state))
    return state


def _first_tensor(state):
    found = []
    map_state(lambda t, _: found.append(t) or t, state)
    return found[0] if found else None


def _check_rows(rows: int, who: str):
    def check(t: torch.Tensor, path: str) -> torch.Tensor:
        if t.dim() == 0 or t.shape[0] != rows:
            raise ValueError(f"{path} {who} must have {rows} rows along dimension 0, "
                             f"got shape {tuple(t.shape)}")
        return t
    return check


def _check_token(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be a non-negative token id, got {value}")
    return int(value)


def beam_search(step_fn: Callable[[torch.Tensor, Any], tuple[torch.Tensor, Any]], init_state: Any,
                batch_size: int, beam_size: int, max_length: int, bos_id: int, eos_id: int,
                length_penalty: float = 1.0, num_return: int = 1, *, pad_id: int | None = None,
                device: str | torch.device | None = None) -> BeamSearchOutput:
    """Beam search over a model's next-token log-probabilities, all beams of all items at once.

    Parameters
    ----------
    step_fn : callable ``(tokens, state) -> (log_probs, new_state)``
        ``tokens`` is a ``(batch_size * beam_size, t)`` int64 tensor of every
        live hypothesis so far, BOS first (row ``b * beam_size + j`` is beam
        ``j`` of batch item ``b``); ``state`` is that row's state.
        ``log_probs`` must be ``(batch_size * beam_size, V)`` log-probabilities
        of the next token; ``new_state`` the state after reading ``tokens``'s
        last column, with the same row layout.
    init_state : tensor, nested dict/list/tuple of tensors, or None
        State per batch item (``batch_size`` rows along dimension 0 of every
        tensor); expanded here to the beams, and reordered along dimension 0 as
        beams are kept, dropped and duplicated.
    batch_size, beam_size, max_length : int
        ``max_length`` counts generated tokens, BOS not included.
    bos_id, eos_id : int
        ``bos_id`` starts every hypothesis (it need not be in the vocabulary);
        a hypothesis ends when it generates ``eos_id``.
    length_penalty : float, default 1.0
        Finished hypotheses are scored ``sum(log_probs) / length ** length_penalty``,
        ``length`` counting generated tokens with the EOS; 0 ranks by the plain sum.
    num_return : int, default 1
        Hypotheses returned per batch item, at most ``beam_size``.
    pad_id : int, optional
        Fills sequences after their end; default ``eos_id``.
    device : torch.device, optional
        Where the token tensors live; default the device of ``init_state``'s
        first tensor, else the CPU.

    Returns
    -------
    BeamSearchOutput
        ``(sequences, scores, lengths)``.

    Raises
    ------
    ValueError, TypeError
        Bad sizes or ids, a state tensor without ``batch_size`` rows, or a
        ``step_fn`` returning the wrong shape, a non-float tensor or NaN.

    Notes
    -----
    Each step ranks the ``2 * beam_size`` best extensions of all beams of an
    item (so at least ``beam_size`` of them are not EOS): extensions ending in
    EOS, and every extension at ``max_length``, join the item's finished
    hypotheses (the best ``beam_size`` are kept); the best ``beam_size`` others
    go on. An item stops once it holds ``beam_size`` finished hypotheses and no
    live beam can still beat the worst of them: log-probabilities are <= 0, so a
    beam's score can only fall, and its best possible normalised score is its
    current sum divided by the largest reachable ``length ** length_penalty``.
    Hence a beam at least ``V ** max_length`` wide finds the exact best
    sequences, and ``beam_size=1`` with ``length_penalty=0`` is greedy decoding.
    The search ends when every item has stopped, or at ``max_length``.

    Examples
    --------
    >>> import torch
    >>> from dlkernels.decoding import beam_search
    >>> table = torch.log_softmax(torch.randn(5, 5), dim=1)  # next token | last token
    >>> def step(tokens, state):
    ...     return table[tokens[:, -1] % 5], state
    >>> out = beam_search(step, None, batch_size=2, beam_size=3, max_length=4,
    ...                   bos_id=0, eos_id=4)
    >>> out.sequences.shape, out.scores.shape
    (torch.Size([2, 1, 4]), torch.Size([2, 1]))
    """
    if not callable(step_fn):
        raise TypeError(f"step_fn must be callable, got {type(step_fn).__name__}")
    B = check_count(batch_size, "batch_size", minimum=1)
    K = check_count(beam_size, "beam_size", minimum=1)
    L = check_count(max_length, "max_length", minimum=1)
    bos_id = _check_token(bos_id, "bos_id")
    eos_id = _check_token(eos_id, "eos_id")
    pad_id = eos_id if pad_id is None else _check_token(pad_id, "pad_id")
    num_return = check_count(num_return, "num_return", minimum=1)
    if num_return > K:
        raise ValueError(f"num_return must be at most beam_size={K}, got {num_return}")
    if isinstance(length_penalty, bool) or not isinstance(length_penalty, numbers.Real) \
            or not math.isfinite(length_penalty):
        raise ValueError(f"length_penalty must be a finite real number, got {length_penalty!r}")
    lp = float(length_penalty)
    map_state(_check_rows(B, "in init_state"), init_state)
    if device is None:
        first = _first_tensor(init_state)
        device = first.device if first is not None else torch.device("cpu")

    rows = B * K
    state = map_state(lambda t, _: t.repeat_interleave(K, dim=0), init_state)
    tokens = torch.full((rows, 1), bos_id, dtype=torch.long, device=device)
    beam_lp = torch.full((B, K), -math.inf, device=device)
    beam_lp[:, 0] = 0.0  # one live beam at first, so the first step's extensions differ
    pool_score = torch.full((B, K), -math.inf, device=device)
    pool_seq = torch.full((B, K, L), pad_id, dtype=torch.long, device=device)
    pool_len = torch.zeros((B, K), dtype=torch.long, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    base = torch.arange(B, device=device)[:, None] * K
    V = None
    for t in range(1, L + 1):
        log_probs, new_state = _call(step_fn, tokens, state, rows, V, t)
        V = log_probs.shape[1]
        if t == 1 and eos_id >= V:
            raise ValueError(f"eos_id must be a token of the vocabulary of size {V}, got {eos_id}")
        if beam_lp.dtype != log_probs.dtype:
            beam_lp, pool_score = beam_lp.to(log_probs.dtype), pool_score.to(log_probs.dtype)
        cand = (beam_lp.unsqueeze(2) + log_probs.view(B, K, V)).view(B, K * V)
        n_cand = min(2 * K, K * V)
        top_lp, top_idx = cand.topk(n_cand, dim=1)
        origin, token = top_idx // V, top_idx % V
        live = top_lp > -math.inf
        is_eos = token == eos_id

        # Finished hypotheses: extensions ending in EOS, and all at the last step.
        finish = live & ~done[:, None] & (is_eos if t < L else torch.ones_like(is_eos))
        score = torch.where(finish, top_lp / float(t) ** lp, -math.inf)
        prefix = tokens[:, 1:].view(B, K, t - 1)
        seqs = torch.cat([prefix.gather(1, origin[:, :, None].expand(-1, -1, t - 1)),
                          token[:, :, None]], dim=2)
        seqs = torch.nn.functional.pad(seqs, (0, L - t), value=pad_id)
        all_score = torch.cat([pool_score, score], dim=1)
        pool_score, keep = all_score.topk(K, dim=1)
        pool_seq = torch.cat([pool_seq, seqs], dim=1).gather(
            1, keep[:, :, None].expand(-1, -1, L))
        pool_len = torch.cat([pool_len, torch.full_like(token, t)], dim=1).gather(1, keep)
        if t == L:
            break

        # The best beam_size extensions that are not EOS go on.
        go_lp = torch.where(live & ~is_eos, top_lp, -math.inf)
        beam_lp, pick = go_lp.topk(K, dim=1)
        beam_lp = beam_lp.masked_fill(done[:, None], -math.inf)
        flat = (base + origin.gather(1, pick)).view(-1)
        tokens = torch.cat([tokens[flat], token.gather(1, pick).view(-1, 1)], dim=1)
        state = map_state(lambda s, _: s.index_select(0, flat), new_state)

        # Stop an item once no live beam can beat its worst kept hypothesis.
        best_live = beam_lp.max(dim=1).values
        reach = float(L) ** lp if lp >= 0 else float(t + 1) ** lp
        worst = pool_score[:, K - 1]
        done = done | (best_live == -math.inf) | ((worst > -math.inf) & (best_live / reach < worst))
        if bool(done.all()):
            break
    return BeamSearchOutput(pool_seq[:, :num_return], pool_score[:, :num_return],
                            pool_len[:, :num_return])


def _call(step_fn, tokens, state, rows: int, V, t: int):
    out = step_fn(tokens, state)
    if not isinstance(out, tuple) or len(out) != 2:
        raise TypeError(f"step_fn must return a (log_probs, new_state) tuple, got "
                        f"{type(out).__name__}")
    log_probs, new_state = out
    if not isinstance(log_probs, torch.Tensor) or not log_probs.is_floating_point():
        raise TypeError(f"step_fn must return floating-point log_probs, got "
                        f"{getattr(log_probs, 'dtype', type(log_probs).__name__)} at step {t}")
    want = f"({rows}, {'V' if V is None else V})"
    if log_probs.dim() != 2 or log_probs.shape[0] != rows or (V is not None and log_probs.shape[1] != V) \
            or log_probs.shape[1] == 0:
        raise ValueError(f"step_fn must return log_probs of shape {want} (batch_size * beam_size "
                         f"rows), got {tuple(log_probs.shape)} at step {t}")
    if bool(torch.isnan(log_probs).any()):
        raise ValueError(f"step_fn returned NaN log_probs at step {t}")
    map_state(_check_rows(rows, "returned by step_fn"), new_state, "new_state")
    return log_probs, new_state
