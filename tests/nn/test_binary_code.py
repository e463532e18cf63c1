"""BinaryCodeSoftmax: normalised distribution, exact top-k by search, codes and trellis."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from dlkernels.nn import BinaryCodeSoftmax  # noqa: E402
from dlkernels.nn._trellis import Trellis  # noqa: E402

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
D = 6
K7 = (0o171, 0o133)
KINDS = {
    "binary": {},
    "convolutional": {"code": "convolutional"},
    "hybrid": {"n_softmax": 7},
    "hybrid-convolutional": {"n_softmax": 5, "code": "convolutional"},
}


def make(kind, V, scale=1.0, seed=0, counts=None, **kw):
    kw.setdefault("reduction", "none")
    torch.manual_seed(seed)
    layer = BinaryCodeSoftmax(D, V, counts=counts, **KINDS[kind], **kw)
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0, scale)
    return layer.double()


def reference_encode(code: int, n_data: int, generators) -> list[int]:
    """A shift-register encoder, written plainly: MSB first, K - 1 zero tail bits."""
    K = max(g.bit_length() for g in generators)
    inputs = [(code >> (n_data - 1 - i)) & 1 for i in range(n_data)] + [0] * (K - 1)
    register = [0] * (K - 1)                         # inputs of 1 .. K-1 steps ago
    out = []
    for u in inputs:
        window = [u] + register                      # delay 0 .. K-1
        for g in generators:
            out.append(sum(window[i] * ((g >> (K - 1 - i)) & 1) for i in range(K)) % 2)
        register = window[:-1]
    return out


class TestTrellis:
    @pytest.mark.parametrize("n_codes", [2, 3, 5, 8, 9, 37, 64, 100])
    @pytest.mark.parametrize("generators", [(1,), K7, (0b111, 0b101)])
    def test_encode_matches_shift_register(self, n_codes, generators):
        trellis = Trellis(n_codes, generators)
        words = trellis.encode(torch.arange(n_codes)).long().tolist()
        want = [reference_encode(c, trellis.n_data, generators) for c in range(n_codes)]
        assert words == want
        assert trellis.n_out == len(want[0])
        # A convolutional code with a tail is injective: no two classes share a word.
        assert len({tuple(w) for w in words}) == n_codes

    @pytest.mark.parametrize("n_codes", [2, 3, 7, 8, 13, 100])
    @pytest.mark.parametrize("generators", [(1,), K7])
    def test_partition_and_viterbi_against_enumeration(self, n_codes, generators):
        torch.manual_seed(n_codes)
        trellis = Trellis(n_codes, generators)
        z = torch.randn(4, trellis.n_out, dtype=torch.float64) * 2
        lp0 = torch.nn.functional.logsigmoid(-z)
        scores = trellis.step_scores(z, lp0)
        words = trellis.encode(torch.arange(n_codes), torch.float64)
        every = lp0.sum(1, keepdim=True) + z @ words.T                  # (4, n_codes)
        torch.testing.assert_close(trellis.log_partition(scores), torch.logsumexp(every, 1))
        best = trellis.reduce(scores, "max")[0][:, trellis.start]
        torch.testing.assert_close(best, every.max(1).values)
        codes, lp = trellis.top_k(scores, n_codes)
        top_lp, top_codes = every.topk(n_codes, dim=1)
        torch.testing.assert_close(lp, top_lp)
        assert torch.equal(codes, top_codes)


class TestDistribution:
    @pytest.mark.parametrize("kind", KINDS)
    @pytest.mark.parametrize("V", [9, 16, 17, 300])
    @pytest.mark.parametrize("with_counts", [False, True])
    def test_log_prob_sums_to_one_and_matches_forward(self, kind, V, with_counts, layer_checks):
        counts = np.random.default_rng(V).zipf(1.5, V).astype(float) if with_counts else None
        m = make(kind, V, scale=2.0, counts=counts)
        layer_checks.normalised_and_forward_is_nll(m, V, D)

    def test_probability_is_product_of_bits(self):
        # Plain code: p(class) ∝ prod_j p(bit j); check one class by hand.
        m = make("binary", 37)
        x = torch.randn(1, D, dtype=torch.float64)
        p1 = torch.sigmoid(x @ m.weight.T + m.bias)[0].detach()       # (6,)
        unnorm = []
        for c in range(37):
            bits = [(c >> (5 - j)) & 1 for j in range(6)]
            unnorm.append(math.prod(float(p1[j]) if b else 1 - float(p1[j])
                                    for j, b in enumerate(bits)))
        want = np.log(np.array(unnorm) / sum(unnorm))
        np.testing.assert_allclose(m.log_prob(x)[0].detach().numpy(), want, rtol=1e-12)

    def test_frequent_classes_get_small_codes_and_the_head(self):
        counts = np.arange(1, 41, dtype=float)                         # class 39 most frequent
        m = BinaryCodeSoftmax(D, 40, counts=counts, n_softmax=3)
        assert m.class_of_head.tolist() == [39, 38, 37]
        assert m.code_of_class[36] == 0 and m.code_of_class[0] == 36
        assert (m.code_of_class[[37, 38, 39]] == -1).all()
        assert m.n_bits == 6                                            # 37 codes

    @pytest.mark.parametrize("kind", KINDS)
    def test_gradients_match_full_log_prob(self, kind, layer_checks):
        layer_checks.gradients_match_log_prob(make(kind, 50), 50, D)

    def test_reductions(self):
        x, y = torch.randn(2, 3, D), torch.randint(0, 30, (2, 3))
        none = BinaryCodeSoftmax(D, 30, reduction="none")
        assert none(x, y).shape == (2, 3)
        for reduction, fn in (("sum", torch.sum), ("mean", torch.mean)):
            other = BinaryCodeSoftmax(D, 30, reduction=reduction)
            other.load_state_dict(none.state_dict())
            torch.testing.assert_close(other(x, y), fn(none(x, y)))
        assert BinaryCodeSoftmax(D, 30)(x, y).shape == ()

    @pytest.mark.parametrize("kind", ["binary", "hybrid-convolutional"])
    def test_learns(self, kind):
        torch.manual_seed(0)
        layer = BinaryCodeSoftmax(16, 200, reduction="mean", **KINDS[kind])
        x = torch.randn(200, 16)
        y = torch.randperm(200)
        model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.Tanh(),
                                    torch.nn.Linear(64, 16))
        opt = torch.optim.Adam(list(model.parameters()) + list(layer.parameters()), lr=0.03)
        for _ in range(100):
            opt.zero_grad()
            layer(model(x), y).backward()
            opt.step()
        accuracy = (layer.predict(model(x)).squeeze(1) == y).float().mean()
        assert accuracy > 0.9


class TestPredict:
    @pytest.mark.parametrize("kind", KINDS)
    @pytest.mark.parametrize("scale", [0.05, 5.0])  # flat, peaked
    @pytest.mark.parametrize("k", [1, 5, 50])
    def test_predict_is_topk(self, kind, scale, k, layer_checks):
        m = make(kind, 200, scale=scale, seed=k)
        layer_checks.predict_is_topk(m, torch.randn(32, D, dtype=torch.float64), k)

    @pytest.mark.parametrize("kind", KINDS)
    def test_predict_all_classes(self, kind):
        m = make(kind, 23)
        classes = m.predict(torch.randn(4, D, dtype=torch.float64), 23)
        assert torch.equal(classes.sort(1).values, torch.arange(23).expand(4, -1))

    def test_predict_never_scores_every_class(self, monkeypatch):
        m = make("convolutional", 100_000)
        x = torch.randn(3, D, dtype=torch.float64)
        want = m.log_prob(x).topk(4, dim=1)

        def refuse(*args, **kwargs):
            raise AssertionError("predict scored the whole vocabulary")

        monkeypatch.setattr(BinaryCodeSoftmax, "log_prob", refuse)
        monkeypatch.setattr(Trellis, "encode", refuse)
        classes, values = m.predict(x, 4, return_log_prob=True)
        torch.testing.assert_close(values, want.values)
        assert torch.equal(classes, want.indices)

    @given(V=st.integers(2, 80), k=st.integers(1, 10), scale=st.floats(0.01, 10),
           seed=st.integers(0, 100), kind=st.sampled_from(sorted(KINDS)))
    def test_predict_fuzz(self, V, k, scale, seed, kind):
        head = KINDS[kind].get("n_softmax", 0)
        if head > V - 2:
            return
        k = min(k, V)
        m = make(kind, V, scale=scale, seed=seed)
        x = torch.randn(4, D, dtype=torch.float64)
        values = m.predict(x, k, return_log_prob=True)[1]
        torch.testing.assert_close(values, m.log_prob(x).topk(k, 1).values)

    def test_leading_dimensions(self, layer_checks):
        layer_checks.leading_dimensions(make("hybrid", 20), 20, D)


class TestHouse:
    @pytest.mark.parametrize("kind", KINDS)
    def test_pickle_and_state_dict(self, kind, tmp_path, layer_checks):
        # log_prob first fills the trellis' per-device table cache, which pickling drops.
        layer_checks.pickle_and_state_dict(make(kind, 30), make(kind, 30, seed=99),
                                           torch.randn(3, D, dtype=torch.float64), tmp_path)

    def test_sizes_and_repr(self):
        m = BinaryCodeSoftmax(300, 100_000)
        assert m.n_bits == 17 and m.weight.shape == (17, 300)
        conv = BinaryCodeSoftmax(300, 100_000, code="convolutional")
        assert conv.n_bits == 2 * (17 + 6)
        assert conv.extra_repr() == ("dim=300, n_classes=100000, code='convolutional', "
                                     "n_bits=46, n_softmax=0, bias=True, reduction='mean'")

    def test_float32(self):
        m = BinaryCodeSoftmax(D, 1000, code="convolutional")
        x = torch.randn(4, D)
        lp = m.log_prob(x)
        assert lp.dtype == torch.float32
        torch.testing.assert_close(lp.exp().sum(1), torch.ones(4))
        assert m(x, torch.tensor([0, 1, 2, 999])).dtype == torch.float32

    def test_bad_input(self):
        with pytest.raises(ValueError, match="n_classes must be >= 2, got 1"):
            BinaryCodeSoftmax(D, 1)
        with pytest.raises(ValueError, match="n_softmax must be at most n_classes - 2 = 8"):
            BinaryCodeSoftmax(D, 10, n_softmax=9)
        with pytest.raises(ValueError, match="code must be one of 'binary', 'convolutional'"):
            BinaryCodeSoftmax(D, 10, code="hamming")
        with pytest.raises(ValueError, match="counts must have one entry per class"):
            BinaryCodeSoftmax(D, 10, counts=np.ones(9))
        with pytest.raises(ValueError, match="counts must be finite"):
            BinaryCodeSoftmax(D, 3, counts=[1, math.nan, 2])
        with pytest.raises(ValueError, match="dim must be >= 1, got 0"):
            BinaryCodeSoftmax(0, 10)
        m = make("hybrid", 10)
        before = {k: v.clone() for k, v in m.state_dict().items()}
        x = torch.randn(3, D, dtype=torch.float64)
        with pytest.raises(ValueError, match=r"input must have shape \(\.\.\., 6\)"):
            m(torch.randn(3, D + 1, dtype=torch.float64), torch.tensor([0, 1, 2]))
        with pytest.raises(IndexError, match=r"target must lie in \[0, 10\), got 10"):
            m(x, torch.tensor([0, 10, 2]))
        with pytest.raises(ValueError, match="k must be at most n_classes=10, got 11"):
            m.predict(x, 11)
        with pytest.raises(TypeError, match="k must be an int"):
            m.predict(x, 2.0)
        after = m.state_dict()
        assert all(torch.equal(v, after[key]) for key, v in before.items())


@cuda
@pytest.mark.gpu
@pytest.mark.parametrize("kind", KINDS)
def test_cuda(kind):
    m = make(kind, 300, scale=2.0).cuda()
    x = torch.randn(16, D, dtype=torch.float64, device="cuda")
    y = torch.randint(0, 300, (16,), device="cuda")
    lp = m.log_prob(x)
    assert lp.device.type == "cuda"
    torch.testing.assert_close(lp.exp().sum(1), torch.ones(16, dtype=torch.float64, device="cuda"))
    torch.testing.assert_close(m(x, y), -lp.gather(1, y[:, None]).squeeze(1))
    classes, values = m.predict(x, 5, return_log_prob=True)
    torch.testing.assert_close(values, lp.topk(5, 1).values)
    m(x, y).sum().backward()
