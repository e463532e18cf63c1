"""Bit allocation: compress_to_size and quantize(budget_bytes=...)."""

import copy
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from dlkernels.compress import (compress_to_size, compression_report, load_compressed,  # noqa: E402
                                quantize, quantized_tensors, save_compressed)
from dlkernels.compress.allocate import _allocate  # noqa: E402

from .conftest import assert_same_snapshot, snapshot  # noqa: E402


def _task(seed=0, n=512):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 16, generator=g)
    y = (X[:, :3].sum(1) > 0).long() + (X[:, 3] > 0.5).long()
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 32),
                                torch.nn.ReLU(), torch.nn.Linear(32, 3))
    batches = [(X[i:i + 64], y[i:i + 64]) for i in range(0, n, 64)]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(15):
        for xb, yb in batches:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
    return model, batches, (X, y)


def _accuracy(model, data):
    with torch.no_grad():
        return float((model(data[0]).argmax(1) == data[1]).float().mean())


@given(st.lists(st.lists(st.tuples(st.integers(1, 40), st.integers(0, 50)), min_size=1,
                         max_size=5), min_size=1, max_size=4), st.integers(1, 150))
def test_allocation_is_the_exact_knapsack_optimum(layers, budget):
    options = [[(size, float(loss), i) for i, (size, loss) in enumerate(opts)] for opts in layers]
    found = _allocate(options, budget)
    combos = [c for c in itertools.product(*options) if sum(o[0] for o in c) <= budget]
    if not combos:
        assert found is None
        return
    best = min(sum(o[1] for o in c) for c in combos)
    assert found[1] == best
    picked = [opts[i] for opts, i in zip(options, found[2])]
    assert sum(o[0] for o in picked) <= budget and sum(o[1] for o in picked) == best


def test_compress_to_size_meets_the_ratio(tmp_path):
    model, batches, data = _task()
    base = _accuracy(model, data)
    result = compress_to_size(model, batches, target_ratio=6, epochs=3, steps=2,
                              amounts=(0.0, 0.5, 0.7, 0.8, 0.9, 0.95))
    size = save_compressed(model, tmp_path / "m.fdlz")
    assert size == result.file_bytes == compression_report(model).file_bytes
    assert result.ratio >= 6 and result.float32_bytes / size >= 6
    assert result.budget_bytes == int(result.float32_bytes / 6)
    assert set(result.amounts) == {"0", "2", "4"} and set(result.bits.values()) == {5}
    assert 3 <= result.mantissa_bits <= 10
    assert _accuracy(model, data) >= base - 0.05
    loaded = load_compressed(tmp_path / "m.fdlz")
    with torch.no_grad():
        assert torch.equal(loaded(data[0]), model(data[0]))


@pytest.mark.slow
def test_free_bits_and_budget_bytes(tmp_path):
    model, batches, _ = _task(1)
    result = compress_to_size(model, batches, budget_bytes=1500, bits=None, bits_options=(2, 3, 6),
                              epochs=2, steps=2, amounts=(0.0, 0.6, 0.8, 0.9))
    assert result.file_bytes <= 1500 and set(result.bits.values()) <= {2, 3, 6}
    assert save_compressed(model, tmp_path / "m.fdlz") <= 1500


def test_bad_requests_leave_the_model_alone():
    model, batches, _ = _task()
    before = snapshot(model)
    for kwargs, words in (({}, "exactly one"), ({"budget_bytes": 100, "target_ratio": 5}, "exactly one"),
                          ({"target_ratio": 0.5}, "target_ratio"), ({"budget_bytes": 0}, "budget_bytes"),
                          ({"budget_bytes": 40, "amounts": (0.0, 0.5)}, "smallest file"),
                          ({"target_ratio": 5, "bits": 17}, "bits")):
        with pytest.raises(ValueError, match=words):
            compress_to_size(model, batches, **kwargs)
        assert_same_snapshot(before, snapshot(model))
    quantize(model, bits=3)
    with pytest.raises(ValueError, match="quantized already"):
        compress_to_size(model, batches, target_ratio=5)


def test_quantize_to_a_budget(tmp_path):
    model, batches, data = _task(2)
    small, large = model, copy.deepcopy(model)
    quantize(small, budget_bytes=2000, batches=batches, bias_bits=4)
    quantize(large, budget_bytes=6000, batches=batches, bias_bits=4)
    assert save_compressed(small, tmp_path / "s.fdlz") <= 2000
    assert save_compressed(large, tmp_path / "l.fdlz") <= 6000
    k_small = {n: cb.numel() for n, (cb, _) in quantized_tensors(small).items() if n.endswith("weight")}
    k_large = {n: cb.numel() for n, (cb, _) in quantized_tensors(large).items() if n.endswith("weight")}
    assert sum(k_small.values()) < sum(k_large.values())
    assert _accuracy(large, data) >= _accuracy(small, data) - 0.02


def test_quantize_budget_arguments():
    model, batches, _ = _task()
    before = snapshot(model)
    for kwargs, words in (({"budget_bytes": 1000, "bits": 4, "batches": batches}, "not both"),
                          ({"budget_bytes": 1000}, "batches"),
                          ({"budget_bytes": 10, "batches": batches}, "budget_bytes=10")):
        with pytest.raises(ValueError, match=words):
            quantize(model, **kwargs)
        assert_same_snapshot(before, snapshot(model))
