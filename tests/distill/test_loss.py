"""distillation_loss and TemperatureSchedule: the formula, its limits, bad input."""

import inspect
import math

import pytest
from hypothesis import given, strategies as st

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from dlkernels.distill import TemperatureSchedule, distillation_loss  # noqa: E402


def reference(s, t, y, T, alpha):
    """Hinton et al. written out per example with explicit sums."""
    out = []
    for i in range(s.shape[0]):
        # Logs from log_softmax: the log of a subnormal probability loses digits.
        log_p, log_q = torch.log_softmax(t[i] / T, 0), torch.log_softmax(s[i] / T, 0)
        p = log_p.exp()
        kl = torch.where(p > 0, p * (log_p - log_q), 0.0).sum()  # 0 log 0 = 0
        term = T * T * kl
        if y is not None:
            ce = -torch.log_softmax(s[i], 0)[y[i]]
            term = alpha * term + (1 - alpha) * ce
        out.append(term)
    return torch.stack(out)


@pytest.mark.parametrize("T", [0.5, 1.0, 4.0])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_formula(T, alpha):
    g = torch.Generator().manual_seed(0)
    s = torch.randn(7, 5, generator=g, dtype=torch.float64)
    t = torch.randn(7, 5, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, 5, (7,), generator=g)
    want = reference(s, t, y, T, alpha)
    kw = {"temperature": T, "alpha": alpha}
    torch.testing.assert_close(distillation_loss(s, t, y, **kw, reduction="none"), want)
    torch.testing.assert_close(distillation_loss(s, t, y, **kw), want.mean())
    torch.testing.assert_close(distillation_loss(s, t, y, **kw, reduction="sum"), want.sum())
    # No target: the scaled KL term alone, whatever alpha is.
    torch.testing.assert_close(distillation_loss(s, t, None, **kw),
                               reference(s, t, None, T, alpha).mean())


def test_limits_and_gradients():
    g = torch.Generator().manual_seed(1)
    t = torch.randn(6, 4, generator=g, dtype=torch.float64)
    assert float(distillation_loss(t.clone(), t)) == pytest.approx(0.0, abs=1e-12)
    y = torch.randint(0, 4, (6,), generator=g)
    s = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(distillation_loss(s, t, y, alpha=0.0), F.cross_entropy(s, y))
    # The gradient of the soft term is (q - p) * T / N per logit (the T**2 scaling at work).
    T = 3.0
    loss = distillation_loss(s, t, None, temperature=T)
    loss.backward()
    q, p = torch.softmax(s.detach() / T, 1), torch.softmax(t / T, 1)
    torch.testing.assert_close(s.grad, (q - p) * T / 6)
    # The teacher gets no gradient.
    t2 = t.clone().requires_grad_()
    distillation_loss(s, t2, y).backward()
    assert t2.grad is None


def test_leading_dims_and_float32():
    s, t = torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    y = torch.randint(0, 5, (2, 3))
    out = distillation_loss(s, t, y, reduction="none")
    assert out.shape == (2, 3) and out.dtype == torch.float32
    torch.testing.assert_close(out.reshape(-1), distillation_loss(s.reshape(6, 5), t.reshape(6, 5),
                                                                  y.reshape(6), reduction="none"))


@pytest.mark.parametrize("call, exc, msg", [
    (lambda s, t, y: distillation_loss(s, t[:, :4], y), ValueError,
     r"input and teacher_logits must have the same shape, got \(4, 5\) and \(4, 4\)"),
    (lambda s, t, y: distillation_loss(s, t, y, temperature=0), ValueError,
     "temperature must be a finite number > 0, got 0"),
    (lambda s, t, y: distillation_loss(s, t, y, temperature=-1.0), ValueError, "temperature"),
    (lambda s, t, y: distillation_loss(s, t, y, alpha=1.5), ValueError, "alpha must be"),
    (lambda s, t, y: distillation_loss(s, t, torch.tensor([0, 1, 5, 2])), IndexError,
     r"target must lie in \[0, 5\), got 5 at position 2"),
    (lambda s, t, y: distillation_loss(s, t, y[:3]), ValueError, "target must have shape"),
    (lambda s, t, y: distillation_loss(s.index_fill(1, torch.tensor([2]), math.nan), t, y),
     ValueError, "input must be finite, got nan"),
    (lambda s, t, y: distillation_loss(s, t.index_fill(0, torch.tensor([3]), math.inf), y),
     ValueError, "teacher_logits must be finite, got inf at index"),
    (lambda s, t, y: distillation_loss(s, t.long(), y), TypeError, "teacher_logits must be a floating"),
    (lambda s, t, y: distillation_loss(s, t, y, reduction="avg"), ValueError, "reduction"),
])
def test_bad_input(call, exc, msg):
    s, t = torch.randn(4, 5), torch.randn(4, 5)
    y = torch.tensor([0, 1, 2, 3])
    with pytest.raises(exc, match=msg):
        call(s, t, y)


def positional(fn):
    """Names that may be passed by position (the rest are keyword-only)."""
    return [n for n, p in inspect.signature(fn).parameters.items()
            if p.kind is p.POSITIONAL_OR_KEYWORD]


def test_options_are_keyword_only():
    # The data (the student's logits as torch losses name their input, the
    # teacher's, the labels) by position; temperature, alpha, reduction by name.
    assert positional(distillation_loss) == ["input", "teacher_logits", "target"]
    assert positional(TemperatureSchedule) == ["start"]
    with pytest.raises(TypeError):
        distillation_loss(torch.zeros(2, 3), torch.zeros(2, 3), None, 2.0)


class TestSchedule:
    def test_kinds(self):
        assert [TemperatureSchedule(3.0)(s) for s in (0, 5, 100)] == [3.0, 3.0, 3.0]
        lin = TemperatureSchedule(8.0, end=2.0, total=4, kind="linear")
        assert [lin(s) for s in range(6)] == [8.0, 6.5, 5.0, 3.5, 2.0, 2.0]
        cos = TemperatureSchedule(8.0, end=2.0, total=10, kind="cosine")
        values = [cos(s) for s in range(12)]
        assert values[0] == 8.0 and values[10] == pytest.approx(2.0) and values[11] == values[10]
        assert values[5] == pytest.approx(5.0)
        assert all(a > b for a, b in zip(values[:10], values[1:11]))
        exp = TemperatureSchedule(8.0, end=2.0, total=2, kind="exponential")
        assert [exp(0), exp(1), exp(2)] == pytest.approx([8.0, 4.0, 2.0])

    @given(start=st.floats(5e-324, 1.7e308), end=st.floats(5e-324, 1.7e308),
           total=st.integers(1, 1000), kind=st.sampled_from(["linear", "cosine", "exponential"]))
    def test_fuzz_ends_exact_and_values_between(self, start, end, total, kind):
        # start + (end - start) f used to cancel to 0 for ends orders of magnitude
        # apart (a temperature the loss then refused).
        sched = TemperatureSchedule(start, end=end, total=total, kind=kind)
        assert sched(0) == start and sched(total) == end and sched(total + 7) == end
        lo, hi = min(start, end), max(start, end)
        values = [sched(s) for s in sorted({0, 1, total // 3, total // 2, total - 1, total})]
        assert all(lo <= v <= hi and v > 0 for v in values)
        sign = 1 if end >= start else -1   # monotone, up to rounding
        assert all(sign * (b - a) >= -1e-12 * hi for a, b in zip(values, values[1:]))

    @pytest.mark.parametrize("kw, msg", [
        ({"start": 0.0}, "temperature must be a finite number > 0"),
        ({"start": 1.0, "end": -1.0}, "temperature"),
        ({"start": 1.0, "total": 0}, "total must be an int >= 1"),
        ({"start": 1.0, "kind": "step"}, "kind must be one of"),
        ({"start": 1.0, "per": "batch"}, "per must be"),
    ])
    def test_bad(self, kw, msg):
        with pytest.raises(ValueError, match=msg):
            TemperatureSchedule(**kw)
        with pytest.raises(ValueError, match="step must be a non-negative int"):
            TemperatureSchedule(1.0)(-1)


# -- hypothesis ------------------------------------------------------------------------

shapes = st.tuples(st.integers(1, 5), st.integers(1, 6))
moderate = st.floats(-50, 50, allow_nan=False)


@given(shape=shapes, T=st.floats(0.1, 10), alpha=st.floats(0, 1), with_target=st.booleans(),
       reduction=st.sampled_from(["mean", "sum", "none"]), data=st.data())
def test_fuzz_formula(shape, T, alpha, with_target, reduction, data):
    n, c = shape
    s = torch.tensor(data.draw(st.lists(moderate, min_size=n * c, max_size=n * c)),
                     dtype=torch.float64).view(n, c)
    t = torch.tensor(data.draw(st.lists(moderate, min_size=n * c, max_size=n * c)),
                     dtype=torch.float64).view(n, c)
    y = torch.tensor(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n))) \
        if with_target else None
    want = reference(s, t, y, T, alpha)
    want = {"none": want, "sum": want.sum(), "mean": want.mean()}[reduction]
    got = distillation_loss(s, t, y, temperature=T, alpha=alpha, reduction=reduction)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


extreme = st.sampled_from([0.0, 1.0, -1.0, 1e4, -1e4, 6e4, -6e4, 1e38, -1e38, 3e38, -3e38])


@given(shape=shapes, T=st.sampled_from([1e-3, 0.5, 4.0, 1e3]), alpha=st.sampled_from([0.0, 0.5, 1.0]),
       dtype=st.sampled_from([torch.float16, torch.float32, torch.float64]), data=st.data())
def test_fuzz_extreme_logits_never_nan(shape, T, alpha, dtype, data):
    # Finite logits far apart, divided by a small temperature, used to overflow to
    # inf and come back as NaN. Now the loss and its gradient are never NaN: a gap
    # beyond the float range is an infinite (or huge) loss, which is honest.
    n, c = shape
    finite = torch.finfo(dtype).max

    def logits():
        values = data.draw(st.lists(extreme, min_size=n * c, max_size=n * c))
        return torch.tensor([min(max(v, -finite), finite) for v in values], dtype=dtype).view(n, c)

    s, t = logits().requires_grad_(), logits()
    y = torch.tensor(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    loss = distillation_loss(s, t, y, temperature=T, alpha=alpha)
    assert loss.dtype == torch.promote_types(dtype, torch.float32)
    # Non-negative up to rounding, which T**2 magnifies.
    assert not torch.isnan(loss) and float(loss.detach()) >= -T * T * 1e3 * torch.finfo(loss.dtype).eps
    loss.backward()
    assert not torch.isnan(s.grad).any()
