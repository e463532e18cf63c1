"""beam_search: exhaustive search when the beam holds everything, greedy at width 1, state reordering."""

import inspect
import itertools
import math
from collections import namedtuple

import pytest

torch = pytest.importorskip("torch")

from dlkernels.decoding import beam_search  # noqa: E402

Pair = namedtuple("Pair", "h count")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


class ToyModel:
    """A small recurrent model: the state is a nested dict/tuple/namedtuple of tensors,
    and the next-token distribution depends on the whole history through it."""

    def __init__(self, V, d=4, seed=0, eos_bias=0.0, eos_id=0, dtype=torch.float64):
        g = torch.Generator().manual_seed(seed)
        self.V, self.eos_id = V, eos_id
        self.E = torch.randn(V + 1, d, generator=g, dtype=dtype)   # + BOS = V
        self.A = torch.randn(d, d, generator=g, dtype=dtype) * 0.7
        self.out = torch.randn(d, V, generator=g, dtype=dtype) * 1.5
        self.eos_bias = eos_bias
        self.calls = 0

    def init_state(self, batch, seed=1):
        g = torch.Generator().manual_seed(seed)
        h = torch.randn(batch, 4, generator=g, dtype=self.E.dtype)
        return {"rnn": (h, Pair(h * 0, torch.zeros(batch, dtype=torch.long))), "tag": "kept"}

    def step(self, tokens, state):
        self.calls += 1
        h, pair = state["rnn"]
        assert state["tag"] == "kept"
        # Every row's state must have seen exactly its tokens: count checks the reordering.
        assert torch.equal(pair.count, torch.full_like(pair.count, tokens.shape[1] - 1))
        h = torch.tanh(h @ self.A + self.E[tokens[:, -1]])
        logits = h @ self.out
        logits[:, self.eos_id] += self.eos_bias
        new = {"rnn": (h, Pair(pair.h + h, pair.count + 1)), "tag": "kept"}
        return torch.log_softmax(logits, dim=1), new

    def sequence_log_prob(self, seq, item_state):
        """Sum of log-probabilities of one sequence, token by token, one row."""
        tokens = torch.tensor([[self.V]])
        state = item_state
        total = 0.0
        for tok in seq:
            lp, state = self.step(tokens, state)
            total += float(lp[0, tok])
            tokens = torch.cat([tokens, torch.tensor([[tok]])], dim=1)
        return total


def item_state(state, b):
    h, pair = state["rnn"]
    return {"rnn": (h[b:b + 1], Pair(pair.h[b:b + 1], pair.count[b:b + 1])), "tag": "kept"}


def exhaustive(model, state, V, L, eos, lp, n):
    """Every sequence that ends in EOS within L tokens or reaches L tokens, best n."""
    scored = []
    for length in range(1, L + 1):
        for seq in itertools.product(range(V), repeat=length):
            if eos in seq[:-1] or (length < L and seq[-1] != eos):
                continue
            total = model.sequence_log_prob(seq, state)
            scored.append((total / length ** lp, seq))
    scored.sort(key=lambda s: -s[0])
    return scored[:n]


@pytest.mark.parametrize("V, L, lp", [(3, 3, 1.0), (3, 3, 0.0), (4, 2, 2.0), (2, 4, -0.5)])
def test_equals_exhaustive_search(V, L, lp):
    model = ToyModel(V, seed=V + L, eos_bias=0.5)
    B, n = 2, 3
    init = model.init_state(B)
    out = beam_search(model.step, init, B, V ** L, L, bos_id=V, eos_id=0,
                      length_penalty=lp, num_return=n)
    for b in range(B):
        want = exhaustive(model, item_state(init, b), V, L, 0, lp, n)
        for r, (score, seq) in enumerate(want):
            assert out.lengths[b, r] == len(seq)
            assert out.sequences[b, r, :len(seq)].tolist() == list(seq)
            assert (out.sequences[b, r, len(seq):] == 0).all()  # padded with eos
            assert math.isclose(float(out.scores[b, r]), score, rel_tol=1e-9)


def test_beam_one_is_greedy():
    V, L, B = 6, 8, 3
    model = ToyModel(V, seed=3, eos_bias=-1.0)
    init = model.init_state(B)
    out = beam_search(model.step, init, B, 1, L, bos_id=V, eos_id=0, length_penalty=0.0)
    for b in range(B):
        tokens, state, seq, total = torch.tensor([[V]]), item_state(init, b), [], 0.0
        for _ in range(L):
            lp, state = model.step(tokens, state)
            tok = int(lp[0].argmax())
            seq.append(tok)
            total += float(lp[0, tok])
            tokens = torch.cat([tokens, torch.tensor([[tok]])], 1)
            if tok == 0:
                break
        assert out.sequences[b, 0, :len(seq)].tolist() == seq
        assert int(out.lengths[b, 0]) == len(seq)
        assert math.isclose(float(out.scores[b, 0]), total, rel_tol=1e-9)


def test_wider_beam_never_worse_and_sorted():
    V, L, B = 7, 6, 4
    model = ToyModel(V, seed=11)
    init = model.init_state(B)
    prev = None
    for K in (1, 2, 4, 8):
        out = beam_search(model.step, init, B, K, L, bos_id=V, eos_id=0, num_return=1)
        if prev is not None:
            assert (out.scores[:, 0] >= prev - 1e-12).all()
        prev = out.scores[:, 0]
    out = beam_search(model.step, init, B, 5, L, bos_id=V, eos_id=0, num_return=5)
    assert (out.scores[:, :-1] >= out.scores[:, 1:]).all()
    # Each returned score is its sequence's own log-probability / length.
    for b in range(B):
        for r in range(5):
            n = int(out.lengths[b, r])
            seq = out.sequences[b, r, :n].tolist()
            assert math.isclose(model.sequence_log_prob(seq, item_state(init, b)) / n,
                                float(out.scores[b, r]), rel_tol=1e-9)


def test_tensor_state_stops_early_and_float32():
    # A model that always says EOS with high probability stops after one step.
    calls = []

    def step(tokens, state):
        calls.append(tokens.shape)
        logits = torch.zeros(tokens.shape[0], 5)
        logits[:, 2] = 10.0
        return torch.log_softmax(logits + state[:, :1] * 0, dim=1), state

    # With length_penalty 0 a live beam can only lose score, so the search ends
    # as soon as four finished hypotheses beat every live beam.
    out = beam_search(step, torch.zeros(3, 2), 3, 4, 50, bos_id=0, eos_id=2, num_return=2,
                      length_penalty=0.0)
    assert len(calls) < 5
    # With length_penalty 1 a live beam might still win by growing long: no early stop.
    calls.clear()
    beam_search(step, torch.zeros(3, 2), 3, 4, 50, bos_id=0, eos_id=2, length_penalty=1.0)
    assert len(calls) > 5
    assert out.sequences.shape == (3, 2, 50) and out.scores.dtype == torch.float32
    assert out.sequences[:, 0, 0].tolist() == [2, 2, 2] and out.lengths[:, 0].tolist() == [1, 1, 1]


def test_no_state():
    table = torch.log_softmax(torch.randn(5, 5, generator=torch.Generator().manual_seed(0)), 1)
    out = beam_search(lambda tok, s: (table[tok[:, -1]], s), None, 2, 3, 4, bos_id=1, eos_id=4)
    assert out.sequences.shape == (2, 1, 4)
    assert out.sequences[0].tolist() == out.sequences[1].tolist()


@cuda
@pytest.mark.gpu
def test_cuda():
    table = torch.log_softmax(torch.randn(5, 5, device="cuda"), 1)
    out = beam_search(lambda tok, s: (table[tok[:, -1]], s), torch.zeros(2, 1, device="cuda"),
                      2, 3, 4, bos_id=1, eos_id=4)
    assert out.sequences.device.type == "cuda"


def test_options_are_keyword_only():
    # The model, its state, the search's sizes and its two token ids by position;
    # scoring and output options by name.
    params = inspect.signature(beam_search).parameters
    assert [n for n, p in params.items() if p.kind is p.POSITIONAL_OR_KEYWORD] == [
        "step_fn", "init_state", "batch_size", "beam_size", "max_length", "bos_id", "eos_id"]
    with pytest.raises(TypeError):
        beam_search(lambda t, s: (torch.zeros(t.shape[0], 4), s), None, 1, 1, 1, 0, 1, 1.0)


class TestBadInput:
    def step(self, tokens, state):
        return torch.log_softmax(torch.zeros(tokens.shape[0], 4), 1), state

    @pytest.mark.parametrize("kw, exc, msg", [
        ({"beam_size": 0}, ValueError, "beam_size must be >= 1, got 0"),
        ({"beam_size": 2.5}, TypeError, "beam_size must be an int"),
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
        ({"max_length": 0}, ValueError, "max_length must be >= 1"),
        ({"num_return": 3}, ValueError, "num_return must be at most beam_size=2, got 3"),
        ({"eos_id": 4}, ValueError, "eos_id must be a token of the vocabulary of size 4, got 4"),
        ({"eos_id": -1}, ValueError, "eos_id must be a non-negative"),
        ({"bos_id": 1.0}, TypeError, "bos_id must be an int"),
        ({"length_penalty": float("nan")}, ValueError, "length_penalty must be a finite"),
    ])
    def test_arguments(self, kw, exc, msg):
        args = {"batch_size": 3, "beam_size": 2, "max_length": 4, "bos_id": 0, "eos_id": 1}
        args.update(kw)
        with pytest.raises(exc, match=msg):
            beam_search(self.step, torch.zeros(args["batch_size"], 1)
                        if isinstance(args["batch_size"], int) and args["batch_size"] > 0 else None,
                        **args)

    def test_state_rows(self):
        with pytest.raises(ValueError, match=r"state\['h'\] in init_state must have 3 rows"):
            beam_search(self.step, {"h": torch.zeros(2, 1)}, 3, 2, 4, 0, 1)

    @pytest.mark.parametrize("bad, exc, msg", [
        (lambda t, s: (torch.zeros(t.shape[0] + 1, 4), s), ValueError,
         r"log_probs of shape \(6, V\) .* got \(7, 4\) at step 1"),
        (lambda t, s: (torch.zeros(t.shape[0], 4, dtype=torch.long), s), TypeError, "floating-point"),
        (lambda t, s: torch.zeros(t.shape[0], 4), TypeError, "must return a"),
        (lambda t, s: (torch.full((t.shape[0], 4), math.nan), s), ValueError, "NaN log_probs at step 1"),
        (lambda t, s: (torch.zeros(t.shape[0], 4 + t.shape[1]), s), ValueError,
         r"shape \(6, 5\) .* got \(6, 6\) at step 2"),
        (lambda t, s: (torch.zeros(t.shape[0], 4), s[:2]), ValueError,
         "new_state returned by step_fn must have 6 rows"),
    ])
    def test_step_fn_output(self, bad, exc, msg):
        with pytest.raises(exc, match=msg):
            beam_search(bad, torch.zeros(3, 1), 3, 2, 4, 0, 1)


# -- hypothesis ------------------------------------------------------------------------
from hypothesis import given, strategies as st  # noqa: E402


class TableModel:
    """Next-token log-probabilities from a table indexed by batch item, position and
    last token (BOS = V), some tokens masked to -inf; the state carries the item id."""

    def __init__(self, logits, mask):
        self.log_probs = torch.log_softmax(logits.masked_fill(mask, -math.inf), dim=-1)

    def step(self, tokens, item):
        return self.log_probs[item, tokens.shape[1] - 1, tokens[:, -1]], item

    def score(self, b, seq):
        last, total = self.log_probs.shape[-1], 0.0   # BOS first
        for t, tok in enumerate(seq):
            total += float(self.log_probs[b, t, last, tok])
            last = tok
        return total


@given(V=st.integers(2, 4), L=st.integers(1, 3), B=st.integers(1, 2),
       lp=st.sampled_from([-0.5, 0.0, 0.5, 1.0, 2.0]), data=st.data())
def test_fuzz_against_exhaustive_search(V, L, B, lp, data):
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 2**31 - 1)))
    logits = torch.randn(B, L, V + 1, V, generator=g, dtype=torch.float64) * 2
    mask = torch.rand(B, L, V + 1, V, generator=g) < data.draw(st.sampled_from([0.0, 0.3, 0.6]))
    mask[..., 0] &= ~mask[..., 1:].all(-1)   # every row keeps a token
    model = TableModel(logits, mask)
    eos = data.draw(st.integers(0, V - 1))
    K = data.draw(st.sampled_from([1, 2, V ** L]))
    n = data.draw(st.integers(1, K))
    pad = data.draw(st.sampled_from([None, V + 7]))
    out = beam_search(model.step, torch.arange(B), B, K, L, bos_id=V, eos_id=eos,
                      length_penalty=lp, num_return=n, pad_id=pad)
    assert out.sequences.shape == (B, n, L) and out.scores.shape == out.lengths.shape == (B, n)
    scores = out.scores.tolist()
    for b in range(B):
        assert scores[b] == sorted(scores[b], reverse=True)
        for r in range(n):
            if scores[b][r] == -math.inf:
                continue
            # A returned hypothesis is a real one: it ends at EOS or at L, is padded
            # after its end, and its score is its own log-probability / length ** lp.
            length = int(out.lengths[b, r])
            seq = out.sequences[b, r, :length].tolist()
            assert eos not in seq[:-1] and (seq[-1] == eos or length == L)
            assert (out.sequences[b, r, length:] == (eos if pad is None else pad)).all()
            assert math.isclose(model.score(b, seq) / length ** lp, scores[b][r], rel_tol=1e-9,
                                abs_tol=1e-12)
        if K == V ** L:   # wide enough to be exact
            every = [model.score(b, seq) / len(seq) ** lp
                     for length in range(1, L + 1) for seq in itertools.product(range(V), repeat=length)
                     if eos not in seq[:-1] and (seq[-1] == eos or length == L)]
            want = sorted((s for s in every if s > -math.inf), reverse=True)[:n]
            want += [-math.inf] * (n - len(want))
            for got, best in zip(scores[b], want):
                assert got == best or math.isclose(got, best, rel_tol=1e-9, abs_tol=1e-12)
