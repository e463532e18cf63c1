"""VonMisesFisherLoss and log C_m(kappa): high-precision references, exact top-k, LSH recall."""

import math
import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
mpmath = pytest.importorskip("mpmath")
special = pytest.importorskip("scipy.special")

from dlkernels.nn import VonMisesFisherLoss  # noqa: E402
from dlkernels.nn import vmf as vmf_module  # noqa: E402
from dlkernels.nn._bessel import bessel_ratio, vmf_neg_log_normalizer  # noqa: E402

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

DIMS = [2, 3, 4, 5, 7, 16, 31, 32, 33, 59, 60, 61, 62, 63, 64, 100, 128, 255, 300, 301, 512,
        777, 1023, 1024]
KAPPAS = [1e-6, 1e-4, 1e-2, 0.3, 1.0, 2.5, 7.0, 20.0, 60.0, 150.0, 400.0, 1e3, 3e3, 1e4]


@pytest.fixture(autouse=True)
def fifty_digits():
    with mpmath.workdps(50):
        yield


def mp_neg_log_c(m, kappa):
    """-log C_m(kappa) = (m/2) log 2 pi - nu log kappa + log I_nu(kappa), at the working
    precision (50 digits in these tests)."""
    nu = mpmath.mpf(m) / 2 - 1
    k = mpmath.mpf(kappa)
    return (mpmath.mpf(m) / 2 * mpmath.log(2 * mpmath.pi) - nu * mpmath.log(k)
            + mpmath.log(mpmath.besseli(nu, k)))


def mp_ratio(m, kappa):
    nu = mpmath.mpf(m) / 2 - 1
    return mpmath.besseli(nu + 1, kappa) / mpmath.besseli(nu, kappa)


class TestLogNormalizer:
    @pytest.mark.parametrize("m", DIMS)
    def test_value_and_gradient_against_mpmath(self, m):
        kappa = torch.tensor(KAPPAS, dtype=torch.float64, requires_grad=True)
        value = vmf_neg_log_normalizer(kappa, m)
        (grad,) = torch.autograd.grad(value.sum(), kappa)
        value = value.detach()
        for i, k in enumerate(KAPPAS):
            want = mp_neg_log_c(m, k)
            assert abs(float(value[i]) - want) <= 1e-13 * max(1.0, abs(want)), (m, k)
            ratio = mp_ratio(m, k)
            assert abs(float(grad[i]) - ratio) <= 1e-10 * ratio, (m, k)

    @pytest.mark.parametrize("m", [2, 3, 50, 300, 1024])
    @pytest.mark.parametrize("kappa", [1e-6, 0.5, 80.0, 1e4])
    def test_gradient_is_the_derivative(self, m, kappa):
        # mpmath's numerical derivative of the high-precision value, independent of
        # the Bessel-ratio identity the implementation uses.
        want = mpmath.diff(lambda k: mp_neg_log_c(m, k), mpmath.mpf(kappa))
        k = torch.tensor([kappa], dtype=torch.float64, requires_grad=True)
        (grad,) = torch.autograd.grad(vmf_neg_log_normalizer(k, m).sum(), k)
        assert abs(float(grad[0]) - want) <= 1e-10 * abs(want)

    def test_dense_grid_against_scipy_ive(self):
        # log I_nu(k) = log ive(nu, k) + k, wherever ive is a normal float64.
        ms = np.arange(2, 1025, 7)
        ks = np.logspace(-6, 4, 61)
        M, K = np.meshgrid(ms, ks, indexing="ij")
        nu = M / 2 - 1
        with np.errstate(all="ignore"):
            ive = special.ive(nu, K)
            want = M / 2 * np.log(2 * np.pi) - nu * np.log(K) + np.log(ive) + K
        ok = np.isfinite(ive) & (ive > 1e-300)
        assert ok.mean() > 0.3          # the rest under- or overflows float64
        for m in ms:
            row = ms == m
            got = vmf_neg_log_normalizer(torch.as_tensor(ks), int(m)).numpy()
            sel = ok[row][0]
            np.testing.assert_allclose(got[sel], want[row][0][sel], rtol=1e-11, atol=1e-11)

    @pytest.mark.parametrize("m", [2, 3, 33, 300, 1024])
    def test_kappa_zero_is_the_limit(self, m):
        nu = m / 2 - 1
        k = torch.zeros(3, dtype=torch.float64, requires_grad=True)
        value = vmf_neg_log_normalizer(k, m)
        # I_nu(k) ~ (k/2)^nu / Gamma(nu + 1) as k -> 0.
        want = m / 2 * math.log(2 * math.pi) - nu * math.log(2) - math.lgamma(nu + 1)
        torch.testing.assert_close(value, torch.full((3,), want, dtype=torch.float64))
        (grad,) = torch.autograd.grad(value.sum(), k)
        assert torch.equal(grad, torch.zeros(3, dtype=torch.float64))

    def test_closed_forms(self):
        # m = 3: C_3 = kappa / (4 pi sinh kappa); m = 2: C_2 = 1 / (2 pi I_0(kappa)).
        k = torch.tensor([1e-3, 0.7, 5.0, 30.0, 300.0], dtype=torch.float64)
        log_sinh = k + torch.log(-torch.expm1(-2 * k)) - math.log(2)
        torch.testing.assert_close(vmf_neg_log_normalizer(k, 3),
                                   math.log(4 * math.pi) + log_sinh - torch.log(k))
        torch.testing.assert_close(vmf_neg_log_normalizer(k, 2),
                                   math.log(2 * math.pi) + torch.log(torch.special.i0e(k)) + k)

    def test_float32_and_ratio(self):
        k = torch.tensor([0.1, 10.0, 1000.0])
        out = vmf_neg_log_normalizer(k, 300)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, vmf_neg_log_normalizer(k.double(), 300).float())
        torch.testing.assert_close(bessel_ratio(k.double(), 300),
                                   torch.tensor([mp_ratio(300, float(x)) for x in k],
                                                dtype=torch.float64))

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="dim must be an int >= 2, got 1"):
            vmf_neg_log_normalizer(torch.ones(2), 1)
        with pytest.raises(TypeError, match="kappa must be a floating-point"):
            vmf_neg_log_normalizer(torch.ones(2, dtype=torch.long), 4)


def unit(rows):
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


class TestLoss:
    def setup_method(self):
        self.rng = np.random.default_rng(0)
        self.E = self.rng.standard_normal((50, 8)) * self.rng.uniform(0.5, 3, (50, 1))

    def reference(self, out, target, reg=None, strength=0.0):
        """The paper's formulas, with -log C_m from scipy's scaled Bessel function."""
        m = out.shape[1]
        kappa = np.linalg.norm(out, axis=1)
        neg_log_c = m / 2 * np.log(2 * np.pi) - (m / 2 - 1) * np.log(kappa) + np.log(
            special.ive(m / 2 - 1, kappa)) + kappa
        dot = (out * unit(self.E)[target]).sum(1)
        if reg == "dot":
            return neg_log_c - strength * dot
        if reg == "norm":
            return neg_log_c - dot + strength * kappa
        return neg_log_c - dot

    @pytest.mark.parametrize("reg, strength", [(None, None), ("norm", 0.02), ("dot", 0.1),
                                               ("norm", 0.5)])
    def test_formula(self, reg, strength):
        loss = VonMisesFisherLoss(torch.as_tensor(self.E), regularization=reg, strength=strength,
                                  reduction="none")
        out = self.rng.standard_normal((12, 8)) * 4
        target = self.rng.integers(0, 50, 12)
        got = loss(torch.as_tensor(out), torch.as_tensor(target))
        assert got.dtype == torch.float64
        np.testing.assert_allclose(got.numpy(), self.reference(out, target, reg, strength or 0),
                                   rtol=1e-12)

    def test_default_strengths_are_the_papers(self):
        assert VonMisesFisherLoss(self.E, regularization="norm").strength == 0.02
        assert VonMisesFisherLoss(self.E, regularization="dot").strength == 0.1

    def test_reductions_and_shapes(self):
        losses = {r: VonMisesFisherLoss(self.E, reduction=r) for r in ("none", "sum", "mean")}
        out = torch.randn(2, 3, 8)
        y = torch.randint(0, 50, (2, 3))
        none = losses["none"](out, y)
        assert none.shape == (2, 3)
        torch.testing.assert_close(losses["sum"](out, y), none.sum())
        torch.testing.assert_close(losses["mean"](out, y), none.mean())
        assert VonMisesFisherLoss(self.E)(out, y).shape == ()

    def test_gradcheck(self):
        loss = VonMisesFisherLoss(torch.as_tensor(self.E), regularization="norm", reduction="sum")
        out = torch.randn(5, 8, dtype=torch.float64, requires_grad=True)
        y = torch.tensor([0, 3, 3, 49, 7])
        assert torch.autograd.gradcheck(lambda o: loss(o, y), (out,))

    def test_zero_output_is_uniform(self):
        loss = VonMisesFisherLoss(torch.as_tensor(self.E), reduction="none")
        out = torch.zeros(2, 8, dtype=torch.float64, requires_grad=True)
        value = loss(out, torch.tensor([1, 2]))
        # The uniform density on S^7 is 1 / area = Gamma(4) / (2 pi^4).
        want = -math.log(math.gamma(4) / (2 * math.pi ** 4))
        torch.testing.assert_close(value, torch.full((2,), want, dtype=torch.float64))
        value.sum().backward()
        assert torch.isfinite(out.grad).all()

    def test_embeddings_are_normalised_buffers(self):
        loss = VonMisesFisherLoss(self.E)
        assert loss.embeddings.dtype == torch.get_default_dtype()
        torch.testing.assert_close(loss.embeddings.norm(dim=1), torch.ones(50))
        assert "embeddings" in loss.state_dict() and not list(loss.parameters())
        assert loss.extra_repr() == "n_classes=50, dim=8, reduction='mean'"
        reg = VonMisesFisherLoss(self.E, regularization="dot", reduction="sum")
        assert reg.extra_repr() == ("n_classes=50, dim=8, regularization='dot', strength=0.1, "
                                    "reduction='sum'")
        half = VonMisesFisherLoss(torch.as_tensor(self.E, dtype=torch.float16))
        assert half.embeddings.dtype == torch.float16

    def test_learns(self):
        # One output vector per input (a linear map of one-hot inputs) trained on
        # (input -> class) pairs: the loss falls and predict() recovers the classes.
        torch.manual_seed(0)
        E = torch.as_tensor(unit(self.rng.standard_normal((50, 16))), dtype=torch.float32)
        loss = VonMisesFisherLoss(E)
        x = torch.eye(50)
        y = torch.randperm(50)
        model = torch.nn.Linear(50, 16)
        opt = torch.optim.Adam(model.parameters(), lr=0.05)
        first = loss(model(x), y).item()
        for _ in range(300):
            opt.zero_grad()
            loss(model(x), y).backward()
            opt.step()
        assert loss(model(x), y).item() < first - 5
        assert torch.equal(loss.predict(model(x)).squeeze(1), y)

    def test_pickle_and_state_dict(self, tmp_path):
        loss = VonMisesFisherLoss(self.E, regularization="norm")
        out, y = torch.randn(4, 8), torch.tensor([1, 2, 3, 4])
        again = pickle.loads(pickle.dumps(loss))
        torch.testing.assert_close(again(out, y), loss(out, y))
        torch.save(loss.state_dict(), tmp_path / "v.pt")
        fresh = VonMisesFisherLoss(np.ones((50, 8)), regularization="norm")
        fresh.load_state_dict(torch.load(tmp_path / "v.pt", weights_only=True))
        torch.testing.assert_close(fresh(out, y), loss(out, y))


@given(V=st.integers(2, 40), d=st.integers(2, 1100), log_scale=st.floats(-8, 4),
       seed=st.integers(0, 2**31), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_fuzz_finite_loss_and_gradient(V, d, log_scale, seed, dtype):
    g = torch.Generator().manual_seed(seed)
    loss = VonMisesFisherLoss(torch.randn(V, d, generator=g, dtype=dtype), reduction="none")
    out = (torch.randn(3, d, generator=g, dtype=dtype) * 10.0 ** log_scale).requires_grad_()
    value = loss(out, torch.randint(0, V, (3,), generator=g))
    value.sum().backward()
    assert torch.isfinite(value).all() and torch.isfinite(out.grad).all()
    # The loss is at least its minimum over directions, -log C_d(kappa) - kappa.
    kappa = out.detach().double().norm(dim=1)
    floor = vmf_neg_log_normalizer(kappa, d) - kappa
    assert (value.double() >= floor - 1e-3 * (1 + floor.abs())).all()


class TestPredict:
    def brute_force(self, E, out, k):
        cos = unit(out) @ unit(E).T
        order = np.argsort(-cos, axis=1, kind="stable")[:, :k]
        return order, np.take_along_axis(cos, order, 1)

    @pytest.mark.parametrize("k", [1, 7])
    def test_exact_is_brute_force(self, k, monkeypatch):
        rng = np.random.default_rng(1)
        E = rng.standard_normal((300, 12))
        out = rng.standard_normal((40, 12))
        # A small block forces several blocks of rows.
        monkeypatch.setattr(vmf_module, "EXACT_BLOCK", 300 * 7)
        loss = VonMisesFisherLoss(torch.as_tensor(E))
        classes, cos = loss.predict(torch.as_tensor(out), k, method="exact", return_cosine=True)
        want, want_cos = self.brute_force(E, out, k)
        assert np.array_equal(classes.numpy(), want)
        np.testing.assert_allclose(cos.numpy(), want_cos, rtol=1e-12)
        assert loss.predict(torch.as_tensor(out).reshape(2, 20, 12), k).shape == (2, 20, k)

    def test_lsh_recall_on_near_queries(self):
        # Queries at cosine ~0.9 from a random target of 20,000: the LSH path must
        # find the exact nearest for at least 95% of them (measured: all of them at
        # this seed), and return true cosines for what it returns.
        rng = np.random.default_rng(2)
        E = unit(rng.standard_normal((20_000, 32))).astype(np.float32)
        target = rng.integers(0, 20_000, 300)
        out = E[target] + 0.1 * rng.standard_normal((300, 32)).astype(np.float32)
        loss = VonMisesFisherLoss(torch.as_tensor(E))
        loss.build_index(rng=0)
        classes, cos = loss.predict(torch.as_tensor(out), 5, method="lsh", return_cosine=True)
        exact = loss.predict(torch.as_tensor(out), 5, method="exact")
        recall_at_1 = (classes[:, 0] == exact[:, 0]).float().mean()
        assert recall_at_1 >= 0.95
        true_cos = (torch.as_tensor(unit(out)) * loss.embeddings[classes].permute(1, 0, 2)).sum(
            2).T
        torch.testing.assert_close(cos, true_cos, atol=1e-5, rtol=0)

    def test_lsh_rows_without_k_candidates_are_exact(self):
        rng = np.random.default_rng(3)
        E = rng.standard_normal((500, 16))
        out = rng.standard_normal((30, 16))
        out[4] = 0.0                               # zero query: no direction at all
        loss = VonMisesFisherLoss(torch.as_tensor(E))
        loss.build_index(n_tables=1, n_bits=16, rng=0)  # buckets of ~0 to 1 vector
        classes = loss.predict(torch.as_tensor(out), 10, method="lsh", n_probes=0)
        assert (classes >= 0).all()
        exact = loss.predict(torch.as_tensor(out), 10, method="exact")
        assert torch.equal(classes[4], exact[4])

    def test_auto_switches_to_lsh_for_large_vocabularies(self, monkeypatch):
        E = np.random.default_rng(4).standard_normal((400, 8))
        loss = VonMisesFisherLoss(torch.as_tensor(E))
        used = []
        monkeypatch.setattr(loss, "_predict_lsh", lambda *a: used.append("lsh") or
                            VonMisesFisherLoss._predict_exact(loss, *a[:2]))
        loss.predict(torch.randn(3, 8, dtype=torch.float64), 2)
        assert used == []
        monkeypatch.setattr(vmf_module, "LSH_MIN_CLASSES", 400)
        loss.predict(torch.randn(3, 8, dtype=torch.float64), 2)
        assert used == ["lsh"]


class TestBadInput:
    def test_embeddings(self):
        with pytest.raises(ValueError, match="at least 2 rows"):
            VonMisesFisherLoss(torch.randn(1, 8))
        with pytest.raises(ValueError, match="at least 2 columns"):
            VonMisesFisherLoss(torch.randn(10, 1))
        bad = torch.randn(10, 4)
        bad[3, 2] = math.nan
        with pytest.raises(ValueError,
                           match=r"embeddings must be finite, got nan at index \(3, 2\)"):
            VonMisesFisherLoss(bad)
        with pytest.raises(ValueError, match="embeddings must be finite"):
            VonMisesFisherLoss([[1.0, math.inf], [1.0, 2.0]])
        zero = torch.randn(10, 4)
        zero[7] = 0
        with pytest.raises(ValueError, match="no zero row, got one at row 7"):
            VonMisesFisherLoss(zero)
        with pytest.raises(ValueError, match="2-dimensional"):
            VonMisesFisherLoss(torch.randn(10))
        with pytest.raises(TypeError, match="floating-point"):
            VonMisesFisherLoss(torch.ones(10, 4, dtype=torch.long))
        with pytest.raises(ValueError, match="regularization must be one of 'norm', 'dot'"):
            VonMisesFisherLoss(torch.randn(10, 4), regularization="l2")
        with pytest.raises(ValueError, match="strength applies to a regularization"):
            VonMisesFisherLoss(torch.randn(10, 4), strength=0.1)
        with pytest.raises(ValueError, match="strength must be >= 0.0, got -1.0"):
            VonMisesFisherLoss(torch.randn(10, 4), regularization="norm", strength=-1.0)
        with pytest.raises(ValueError, match="reduction must be one of"):
            VonMisesFisherLoss(torch.randn(10, 4), reduction="avg")

    def test_calls(self):
        loss = VonMisesFisherLoss(torch.randn(10, 4))
        before = loss.embeddings.clone()
        with pytest.raises(ValueError, match=r"input must have shape \(\.\.\., 4\), got \(3, 5\)"):
            loss(torch.randn(3, 5), torch.tensor([0, 1, 2]))
        with pytest.raises(IndexError, match=r"target must lie in \[0, 10\), got 10"):
            loss(torch.randn(3, 4), torch.tensor([0, 10, 2]))
        with pytest.raises(ValueError, match="k must be at most n_classes=10, got 11"):
            loss.predict(torch.randn(3, 4), 11)
        with pytest.raises(ValueError, match="method must be one of"):
            loss.predict(torch.randn(3, 4), 1, method="faiss")
        with pytest.raises(ValueError, match="input must be finite"):
            loss.predict(torch.tensor([[1.0, math.nan, 0.0, 0.0]]), 1)
        assert torch.equal(loss.embeddings, before)


@cuda
@pytest.mark.gpu
def test_cuda():
    E = torch.randn(300, 16, dtype=torch.float64)
    cpu = VonMisesFisherLoss(E, regularization="norm", reduction="none")
    gpu = VonMisesFisherLoss(E, regularization="norm", reduction="none", device="cuda")
    out = torch.randn(20, 16, dtype=torch.float64) * 10
    y = torch.randint(0, 300, (20,))
    out_gpu = out.cuda().requires_grad_()
    got = gpu(out_gpu, y.cuda())
    assert got.device.type == "cuda"
    torch.testing.assert_close(got.cpu(), cpu(out, y))
    got.sum().backward()
    out_cpu = out.clone().requires_grad_()
    cpu(out_cpu, y).sum().backward()
    torch.testing.assert_close(out_gpu.grad.cpu(), out_cpu.grad)
    assert torch.equal(gpu.predict(out.cuda(), 5).cpu(), cpu.predict(out, 5))
    lsh = gpu.predict(out.cuda(), 5, method="lsh")
    assert lsh.device.type == "cuda" and lsh.shape == (20, 5)
    k = torch.logspace(-6, 4, 50, dtype=torch.float64)
    torch.testing.assert_close(vmf_neg_log_normalizer(k.cuda(), 777).cpu(),
                               vmf_neg_log_normalizer(k, 777))


def test_lsh_index_follows_new_embeddings():
    rng = np.random.default_rng(6)
    old, new = rng.standard_normal((2, 3000, 16))
    loss = VonMisesFisherLoss(torch.as_tensor(old))
    loss.build_index(n_tables=8, rng=0)
    queries = torch.as_tensor(new[:50] + 0.01 * rng.standard_normal((50, 16)))
    loss.load_state_dict({"embeddings": torch.as_tensor(unit(new))})
    # Queries sit on the new rows 0..49: a stale index of the old rows could not find them.
    assert torch.equal(loss.predict(queries, 1, method="lsh").squeeze(1), torch.arange(50))
