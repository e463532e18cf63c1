"""LSHAttention: exact full attention with one bucket, a plain reference with many, masks."""

import math
import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from dlkernels.nn import LSHAttention  # noqa: E402
from dlkernels.nn.lsh_attention import SELF_SCORE  # noqa: E402

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def full_attention(qk, v, causal=False):
    """Full shared-QK attention: keys are the normalised queries, scores scaled by
    1/sqrt(d), a token never attends to itself unless nothing else is allowed."""
    b, n, d = qk.shape
    keys = qk / qk.norm(dim=-1, keepdim=True)
    scores = qk @ keys.transpose(1, 2) / math.sqrt(d)
    allowed = ~torch.eye(n, dtype=torch.bool)
    if causal:
        allowed &= torch.ones(n, n, dtype=torch.bool).tril()
    alone = ~allowed.any(1)                          # causal: token 0 has only itself
    allowed[alone, alone] = True
    return torch.softmax(scores.masked_fill(~allowed, -math.inf), -1) @ v


def reference_lsh(qk, v, order, bs, causal):
    """The documented algorithm written as loops over queries, for given sorted orders.

    ``order[b, h]``: round h's positions sorted by bucket; chunk c attends to itself
    and (with more than one chunk) to chunk c - 1 of the same round, wrapping around.
    """
    b, n, d = qk.shape
    n_pad = order.shape[2]
    qk = torch.nn.functional.pad(qk, (0, 0, 0, n_pad - n))
    v = torch.nn.functional.pad(v, (0, 0, 0, n_pad - n))
    C = n_pad // bs
    rows = []
    for bi in range(b):
        out_rows = []
        for i in range(n):
            outs, lses = [], []
            for h in range(order.shape[1]):
                sorted_pos = order[bi, h].tolist()
                c = sorted_pos.index(i) // bs
                chunks = [c] if C == 1 else [c, (c - 1) % C]
                keys = [j for cc in chunks for j in sorted_pos[cc * bs:(cc + 1) * bs]]
                scores = []
                for j in keys:
                    if j == i:
                        scores.append(torch.tensor(SELF_SCORE, dtype=qk.dtype))
                    elif j >= n or (causal and j > i):
                        scores.append(torch.tensor(-math.inf, dtype=qk.dtype))
                    else:
                        scores.append(qk[bi, i] @ qk[bi, j] / (qk[bi, j].norm() * math.sqrt(d)))
                scores = torch.stack(scores)
                lse = torch.logsumexp(scores, 0)
                outs.append(torch.exp(scores - lse) @ v[bi, keys])
                lses.append(lse)
            weight = torch.softmax(torch.stack(lses), 0)
            out_rows.append((weight[:, None] * torch.stack(outs)).sum(0))
        rows.append(torch.stack(out_rows))
    return torch.stack(rows)


def data(b, n, d, dv=None, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    qk = torch.randn(b, n, d, generator=g, dtype=dtype, requires_grad=True)
    v = torch.randn(b, n, dv or d, generator=g, dtype=dtype, requires_grad=True)
    return qk, v


class TestOneBucketIsFullAttention:
    @pytest.mark.parametrize("n", [2, 5, 100])
    @pytest.mark.parametrize("causal", [False, True])
    @pytest.mark.parametrize("n_hashes", [1, 4])
    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_values_and_gradients(self, n, causal, n_hashes, dtype):
        qk, v = data(3, n, 16, 8, seed=n, dtype=dtype)
        attn = LSHAttention(128, n_hashes=n_hashes, causal=causal, rng=0)
        got, want = attn(qk, v), full_attention(qk, v, causal)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        g = torch.randn_like(got)
        grads = torch.autograd.grad(got, (qk, v), g)
        want_grads = torch.autograd.grad(want, (qk, v), g)
        for a, b in zip(grads, want_grads):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)

    def test_exact_bucket_size(self):
        qk, v = data(2, 32, 8)
        torch.testing.assert_close(LSHAttention(32, rng=1)(qk, v), full_attention(qk, v))


class TestManyBuckets:
    @pytest.mark.parametrize("n, bs, n_hashes, causal", [
        (40, 8, 3, False), (37, 4, 2, True), (17, 8, 1, False), (24, 8, 2, True),
        (16, 8, 2, False)])
    def test_against_loop_reference(self, n, bs, n_hashes, causal):
        qk, v = data(2, n, 6, 5, seed=n)
        attn = LSHAttention(bs, n_hashes=n_hashes, causal=causal, rng=7)
        twin = LSHAttention(bs, n_hashes=n_hashes, causal=causal, rng=7)   # same rotations
        C = -(-n // bs)
        padded = torch.nn.functional.pad(qk.detach(), (0, 0, 0, C * bs - n))
        order = twin._sorted_positions(padded, n, C)
        got = attn(qk, v)
        want = reference_lsh(qk, v, order, bs, causal)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
        g = torch.randn_like(got)
        grads = torch.autograd.grad(got, (qk, v), g)
        for a, b in zip(grads, torch.autograd.grad(want, (qk, v), g)):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)

    def test_sorted_positions(self):
        qk, _ = data(2, 64, 8)
        attn = LSHAttention(8, n_hashes=3, rng=0)
        order = attn._sorted_positions(qk.detach(), 60, 8)        # 4 padded positions
        assert order.shape == (2, 3, 64)
        assert torch.equal(order.sort(-1).values, torch.arange(64).expand(2, 3, 64))
        assert (order[..., -4:] >= 60).all()                       # padding sorts last

    def test_causal_uses_no_future(self):
        qk, v = data(1, 48, 8)
        out = LSHAttention(8, n_hashes=3, causal=True, rng=0)(qk, v)
        grad_qk, grad_v = torch.autograd.grad(out[0, 20].sum(), (qk, v))
        assert (grad_qk[0, 21:] == 0).all() and (grad_v[0, 21:] == 0).all()
        assert (grad_v[0, :20].abs().sum(1) > 0).any()

    def test_first_causal_token_attends_to_itself(self):
        qk, v = data(2, 50, 8)
        out = LSHAttention(8, n_hashes=2, causal=True, rng=0)(qk, v)
        torch.testing.assert_close(out[:, 0], v[:, 0])

    def test_more_rounds_get_closer_to_full_attention(self):
        # 64 tight clusters of about 16 tokens with large norms: full attention stays
        # within a cluster. Angular LSH puts a cluster in one bucket per round, but a
        # bucket can span chunks, so one round misses mates that others find.
        # (Measured at this seed: relative error 0.71, 0.66, 0.52, 0.38 for 1, 2, 4,
        # 8 rounds; reformer-pytorch: 0.83, 0.63, 0.44, 0.37.)
        g = torch.Generator().manual_seed(0)
        centres = torch.nn.functional.normalize(torch.randn(64, 32, generator=g), dim=1)
        label = torch.randint(0, 64, (1, 1024), generator=g)
        qk = 60 * centres[label] + 0.1 * torch.randn(1, 1024, 32, generator=g)
        v = torch.randn(1, 1024, 32, generator=g)
        full = full_attention(qk, v)
        spread = (full - full.mean(1, keepdim=True)).norm()
        errors = [float((LSHAttention(64, n_hashes=h, rng=0)(qk, v) - full).norm() / spread)
                  for h in (1, 8)]
        assert errors[1] < 0.45 and errors[1] < 0.7 * errors[0], errors

    def test_rng(self):
        qk, v = data(1, 64, 8)
        a, b = LSHAttention(8, rng=3), LSHAttention(8, rng=3)
        first = a(qk, v)
        assert torch.equal(first, b(qk, v))
        assert not torch.equal(first, a(qk, v))      # fresh rotations on every call
        again = pickle.loads(pickle.dumps(b))
        assert torch.equal(again(qk, v), b(qk, v))


@given(b=st.integers(1, 3), n=st.integers(1, 70), d=st.integers(1, 9), bs=st.integers(1, 40),
       n_hashes=st.integers(1, 4), causal=st.booleans(), seed=st.integers(0, 2**31))
def test_fuzz(b, n, d, bs, n_hashes, causal, seed):
    qk, v = data(b, n, d, 3, seed=seed)
    out = LSHAttention(bs, n_hashes=n_hashes, causal=causal, rng=seed)(qk, v)
    assert out.shape == (b, n, 3) and torch.isfinite(out).all()
    if bs >= n:
        torch.testing.assert_close(out, full_attention(qk, v, causal))
    out.sum().backward()
    assert torch.isfinite(qk.grad).all() and torch.isfinite(v.grad).all()


class TestBadInput:
    def test_construction(self):
        with pytest.raises(ValueError, match="bucket_size must be >= 1, got 0"):
            LSHAttention(0)
        with pytest.raises(ValueError, match="n_hashes must be >= 1, got 0"):
            LSHAttention(8, n_hashes=0)
        with pytest.raises(TypeError, match="causal must be True or False"):
            LSHAttention(8, causal=1)
        with pytest.raises(TypeError):
            LSHAttention(8, 4)                         # options are keyword-only
        assert LSHAttention(32, n_hashes=2).extra_repr() == (
            "bucket_size=32, n_hashes=2, causal=False")

    def test_calls(self):
        attn = LSHAttention(8)
        x = torch.randn(2, 10, 4)
        with pytest.raises(ValueError, match=r"qk must have shape \(batch, seq, dim\)"):
            attn(x[0], x[0])
        with pytest.raises(ValueError, match="same batch and sequence sizes"):
            attn(x, x[:, :9])
        with pytest.raises(TypeError, match="v must be a floating-point"):
            attn(x, x.long())
        with pytest.raises(ValueError, match="same dtype and device"):
            attn(x, x.double())
        with pytest.raises(ValueError, match="at least one token"):
            attn(x[:, :0], x[:, :0])
        with pytest.raises(TypeError, match="qk must be a torch.Tensor"):
            attn(np.ones((2, 10, 4)), x)


@cuda
@pytest.mark.gpu
@pytest.mark.parametrize("causal", [False, True])
def test_cuda(causal):
    qk, v = data(2, 1000, 32, dtype=torch.float32)
    cpu = LSHAttention(64, n_hashes=3, causal=causal, rng=5)
    gpu = LSHAttention(64, n_hashes=3, causal=causal, rng=5)
    qk_gpu = qk.detach().cuda().requires_grad_()
    v_gpu = v.detach().cuda().requires_grad_()
    out = gpu(qk_gpu, v_gpu)
    assert out.device.type == "cuda"
    torch.testing.assert_close(out.cpu(), cpu(qk, v), atol=1e-4, rtol=1e-4)
    out.sum().backward()
    one = LSHAttention(1024, causal=causal)(qk_gpu[:, :300], v_gpu[:, :300])
    torch.testing.assert_close(one.cpu(), full_attention(qk[:, :300], v[:, :300], causal),
                               atol=1e-5, rtol=1e-5)
