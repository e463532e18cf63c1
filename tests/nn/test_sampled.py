"""Sampled losses: the documented formulas on the same draws, and consistency as samples grow;
the conventions every output layer shares."""

import inspect

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from dlkernels.nn import (ClassBasedSoftmax, HierarchicalSoftmax, NCELoss,  # noqa: E402
                          NegativeSamplingLoss, SampledSoftmaxLoss)
from dlkernels.sampling import NegativeSampler  # noqa: E402

V, D = 40, 5


def counts():
    c = 1.0 / np.arange(1, V + 1)
    c[7] = 0  # never drawn as noise
    return c


def setup(cls, n, seed=0, **kw):
    torch.manual_seed(seed)
    loss = cls(D, V, counts=counts(), n_negatives=n, rng=seed, reduction="none", **kw).double()
    with torch.no_grad():
        loss.weight.normal_()
        loss.bias.normal_()
    x = torch.randn(6, D, dtype=torch.float64)
    y = torch.tensor([0, 3, 7, 39, 3, 1])
    return loss, x, y


def scores(loss, x, ids):
    return (loss.weight[ids] * x[:, None, :]).sum(-1) + loss.bias[ids]


class TestFormulas:
    def test_negative_sampling(self):
        loss, x, y = setup(NegativeSamplingLoss, 4, seed=1)
        neg = torch.as_tensor(NegativeSampler(counts()).sample((6, 4), rng=np.random.default_rng(1),
                                                               exclude=y))
        assert not (neg == y[:, None]).any()
        want = (-F.logsigmoid(scores(loss, x, y[:, None]).squeeze(1))
                - F.logsigmoid(-scores(loss, x, neg)).sum(1))
        torch.testing.assert_close(loss(x, y), want)

    def test_nce(self):
        loss, x, y = setup(NCELoss, 5, seed=2)
        noise = torch.as_tensor(NegativeSampler(counts()).sample((6, 5), rng=np.random.default_rng(2)))
        q = torch.as_tensor(NegativeSampler(counts()).probabilities)
        delta_pos = scores(loss, x, y[:, None]).squeeze(1) - torch.log(5 * q[y])
        delta_neg = scores(loss, x, noise) - torch.log(5 * q[noise])
        want = -F.logsigmoid(delta_pos) - F.logsigmoid(-delta_neg).sum(1)
        got = loss(x, y)
        torch.testing.assert_close(got, want)
        assert torch.isfinite(got).all()  # class 7 has Q = 0: its positive term is 0

    def test_sampled_softmax(self):
        loss, x, y = setup(SampledSoftmaxLoss, 30, seed=3)
        sampled = torch.as_tensor(NegativeSampler(counts()).sample(30, rng=np.random.default_rng(3)))
        q = torch.as_tensor(NegativeSampler(counts()).probabilities)
        want = []
        for i in range(6):
            keep = sampled[sampled != y[i]]
            s_pos = scores(loss, x[i:i + 1], y[i:i + 1, None]).reshape(1)
            s_neg = scores(loss, x[i:i + 1], keep[None]).reshape(-1) - torch.log(30 * q[keep])
            want.append(torch.logsumexp(torch.cat([s_pos, s_neg]), 0) - s_pos[0])
        torch.testing.assert_close(loss(x, y), torch.stack(want))

    @pytest.mark.parametrize("cls", [NegativeSamplingLoss, NCELoss, SampledSoftmaxLoss])
    def test_seeded_and_shapes(self, cls):
        a, x, y = setup(cls, 3, seed=5)
        b, _, _ = setup(cls, 3, seed=5)
        torch.testing.assert_close(a(x, y), b(x, y))
        assert a(x.reshape(2, 3, D), y.reshape(2, 3)).shape == (2, 3)
        x32 = x.float().requires_grad_()
        f = cls(D, V, counts=counts(), n_negatives=3, rng=0, reduction="none")
        out = f(x32, y)
        assert out.dtype == torch.float32
        out.sum().backward()
        assert f.weight.grad is not None and x32.grad is not None


class TestConsistency:
    def test_sampled_softmax_gradient_tends_to_full_gradient(self):
        """Mean gradient over repeated draws vs the full softmax gradient.

        The estimator's bias falls like 1/n_negatives and the noise of a mean of R
        draws like 1/sqrt(R n); at a fixed seed the relative error must fall
        from small to large n and end below 5% (a deterministic check; at random
        seeds the 5% bound at n=2000, R=40 fails far less than once in 10**4).
        """
        torch.manual_seed(0)
        loss = SampledSoftmaxLoss(D, V, counts=np.ones(V) + np.arange(V) % 5, n_negatives=1,
                                  rng=0, reduction="none").double()
        with torch.no_grad():
            loss.weight.normal_(0, 0.7)
        x = torch.randn(8, D, dtype=torch.float64)
        y = torch.randint(0, V, (8,))

        def grad(fn):
            loss.zero_grad()
            fn().sum().backward()
            return loss.weight.grad.clone()

        full = grad(lambda: F.cross_entropy(F.linear(x, loss.weight, loss.bias), y, reduction="none"))
        errors = []
        for n in (10, 100, 2000):
            loss.n_negatives = n
            mean = sum(grad(lambda: loss(x, y)) for _ in range(40)) / 40
            errors.append(float((mean - full).norm() / full.norm()))
        assert errors[0] > errors[1] > errors[2], errors
        assert errors[2] < 0.05, errors

    def test_negative_sampling_learns_conditional(self):
        # Two inputs with different next classes: training ranks the right class first.
        torch.manual_seed(0)
        loss = NegativeSamplingLoss(D, V, counts=np.ones(V), n_negatives=5, rng=0)
        x = torch.eye(D)[:2].repeat(16, 1)
        y = torch.tensor([3, 11]).repeat(16)
        opt = torch.optim.Adam(loss.parameters(), lr=0.1)
        for _ in range(80):
            opt.zero_grad()
            loss(x, y).backward()
            opt.step()
        assert loss.log_prob(x[:2]).argmax(1).tolist() == [3, 11]


class TestBadInput:
    @pytest.mark.parametrize("cls", [NegativeSamplingLoss, NCELoss, SampledSoftmaxLoss])
    def test_errors(self, cls):
        loss, x, y = setup(cls, 3)
        with pytest.raises(IndexError, match=r"target must lie in \[0, 40\), got 40"):
            loss(x, torch.tensor([0, 1, 2, 3, 4, 40]))
        with pytest.raises(ValueError, match="target must have shape"):
            loss(x, y[:3])
        with pytest.raises(ValueError, match="counts must have one entry per class"):
            cls(D, V, counts=np.ones(V - 1), n_negatives=3)
        with pytest.raises(ValueError, match="counts must have at least one positive"):
            cls(D, V, counts=np.zeros(V), n_negatives=3)
        with pytest.raises(ValueError, match="n_negatives must be >= 1, got 0"):
            cls(D, V, counts=np.ones(V), n_negatives=0)


class TestConventions:
    """reduction, extra_repr and keyword-only options, the same for every output layer."""

    LAYERS = {
        "HierarchicalSoftmax": lambda **kw: HierarchicalSoftmax(D, V, counts=counts(), **kw),
        "ClassBasedSoftmax": lambda **kw: ClassBasedSoftmax(D, V, n_clusters=5, **kw),
        "NegativeSamplingLoss": lambda **kw: NegativeSamplingLoss(D, V, counts=counts(), rng=3,
                                                                  **kw),
        "NCELoss": lambda **kw: NCELoss(D, V, counts=counts(), rng=3, **kw),
        "SampledSoftmaxLoss": lambda **kw: SampledSoftmaxLoss(D, V, counts=counts(),
                                                              n_negatives=20, rng=3, **kw),
    }

    @pytest.mark.parametrize("name", LAYERS)
    def test_reduction(self, name):
        x = torch.randn(2, 3, D)
        y = torch.randint(0, V, (2, 3))
        losses = {}
        for reduction in ("none", "sum", "mean"):
            torch.manual_seed(0)
            losses[reduction] = self.LAYERS[name](reduction=reduction)(x, y)  # same draws (rng=3)
        assert losses["none"].shape == (2, 3)
        assert losses["sum"].shape == losses["mean"].shape == ()
        torch.testing.assert_close(losses["sum"], losses["none"].sum())
        torch.testing.assert_close(losses["mean"], losses["none"].mean())
        torch.manual_seed(0)
        assert self.LAYERS[name]()(x, y).shape == ()      # default: mean
        with pytest.raises(ValueError, match="reduction must be one of 'mean', 'sum', 'none', "
                                             "got 'avg'"):
            self.LAYERS[name](reduction="avg")

    @pytest.mark.parametrize("name", LAYERS)
    def test_extra_repr(self, name):
        layer = self.LAYERS[name](reduction="sum")
        assert layer.extra_repr().startswith(f"dim={D}, n_classes={V}, ")
        assert layer.extra_repr().endswith("reduction='sum'")
        assert repr(layer).startswith(f"{name}(")

    @pytest.mark.parametrize("cls", [HierarchicalSoftmax, ClassBasedSoftmax, NegativeSamplingLoss,
                                     NCELoss, SampledSoftmaxLoss])
    def test_options_are_keyword_only(self, cls):
        params = inspect.signature(cls).parameters
        positional = [n for n, p in params.items() if p.kind is p.POSITIONAL_OR_KEYWORD]
        assert positional == ["dim", "n_classes"]
        forward = list(inspect.signature(cls.forward).parameters)
        assert forward == ["self", "input", "target"]


# -- hypothesis ------------------------------------------------------------------------
from hypothesis import given, strategies as st  # noqa: E402

SAMPLED = [NegativeSamplingLoss, NCELoss, SampledSoftmaxLoss]


@given(cls=st.sampled_from(SAMPLED), n_classes=st.integers(2, 12), dim=st.integers(1, 4),
       power=st.sampled_from([0.0, 0.75, 1.0]), n_negatives=st.integers(1, 8),
       batch=st.tuples(st.integers(1, 3), st.integers(1, 4)),
       reduction=st.sampled_from(["mean", "sum", "none"]), seed=st.integers(0, 2**32 - 1),
       data=st.data())
def test_fuzz_sampled_losses(cls, n_classes, dim, power, n_negatives, batch, reduction, seed, data):
    c = data.draw(st.lists(st.sampled_from([0.0, 1.0, 2.5, 100.0]), min_size=n_classes,
                           max_size=n_classes).filter(lambda v: any(v)))
    y = torch.tensor(data.draw(st.lists(st.integers(0, n_classes - 1), min_size=batch[0] * batch[1],
                                        max_size=batch[0] * batch[1]))).view(batch)
    torch.manual_seed(seed % 2**31)
    x = (torch.randn(*batch, dim, dtype=torch.float64) * 3).requires_grad_()

    def make():
        layer = cls(dim, n_classes, counts=c, n_negatives=n_negatives, power=power, rng=seed,
                    reduction=reduction).double()
        torch.manual_seed(seed % 2**31)
        layer.reset_parameters()
        return layer

    layer, twin = make(), make()
    drawable = np.flatnonzero(layer.sampler.probabilities > 0)
    if cls is NegativeSamplingLoss and drawable.size == 1 and bool((y == int(drawable[0])).any()):
        with pytest.raises(ValueError, match=r"^target holds class \d+ at position \d+, the only"):
            layer(x, y)
        y = torch.where(y == int(drawable[0]), (y + 1) % n_classes, y)  # now every row has a negative
    loss = layer(x, y)   # after a refused call, the same draws as a fresh twin
    torch.testing.assert_close(loss, twin(x, y), rtol=0, atol=0)
    assert loss.shape == (batch if reduction == "none" else ())
    assert bool(torch.isfinite(loss).all()) and bool((loss >= 0).all())
    loss.sum().backward()
    assert bool(torch.isfinite(x.grad).all()) and bool(torch.isfinite(layer.weight.grad).all())
