"""quantize: codebooks from the 1-D k-means of each layer, zeros kept, centroid gradients summed."""

import copy
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dlkernels.compress import dequantize, prune_magnitude, quantize, quantized_tensors  # noqa: E402

from .conftest import mlp  # noqa: E402


def brute_inertia(values, centers):
    return float(((values[:, None] - centers[None]) ** 2).min(1).sum())


@pytest.mark.parametrize("method", ["kmeans", "optimal"])
@pytest.mark.parametrize("bits", [1, 3, 5])
def test_codebook_and_index(method, bits):
    model = mlp((20, 30, 5))
    original = model[0].weight.detach().clone()
    summary = quantize(model, bits=bits, method=method)
    assert summary == {"0.weight": 2**bits - 1, "2.weight": 2**bits - 1}
    codebook, index = quantized_tensors(model)["0.weight"]
    assert index.dtype == torch.int32 and index.shape == original.shape
    assert int(index.min()) >= 1 and int(index.max()) <= 2**bits - 1   # no zeros to keep
    w = model[0].weight
    torch.testing.assert_close(w, codebook[index.long() - 1])
    # Every weight sits at its nearest centroid (a k-means fixed point at least).
    dist = (original.reshape(-1, 1) - codebook.detach().reshape(1, -1)).abs()
    nearest = dist.min(1).values
    torch.testing.assert_close(dist.gather(1, index.reshape(-1, 1).long() - 1).reshape(-1), nearest)


def test_optimal_beats_or_ties_lloyd_and_is_exact_on_tiny_layer():
    from itertools import combinations

    torch.manual_seed(3)
    layer = torch.nn.Sequential(torch.nn.Linear(3, 3, bias=False))
    values = layer[0].weight.detach().double().numpy().ravel()
    a, b = copy.deepcopy(layer), copy.deepcopy(layer)
    quantize(a, bits=2, method="optimal")
    quantize(b, bits=2, method="kmeans")
    opt = brute_inertia(values, a[0].weight_codebook.detach().double().numpy())
    lloyd = brute_inertia(values, b[0].weight_codebook.detach().double().numpy())
    assert opt <= lloyd + 1e-12
    # Exhaustive: every split of the sorted values into 3 intervals.
    s = np.sort(values)
    best = min(sum(((g - g.mean()) ** 2).sum() for g in np.split(s, [i, j]))
               for i, j in combinations(range(1, s.size), 2))
    assert opt == pytest.approx(best, rel=1e-5)


def test_pruned_zeros_keep_index_zero_and_stay_zero_through_fine_tuning():
    model = mlp((20, 30, 5))
    prune_magnitude(model, 0.8)
    zeros = model[0].weight == 0
    quantize(model, bits=4)
    _, index = quantized_tensors(model)["0.weight"]
    assert torch.equal(index == 0, zeros)
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    x, y = torch.randn(32, 20), torch.randint(0, 5, (32,))
    books = model[0].weight_codebook.detach().clone()
    for _ in range(5):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model(x)
    assert torch.equal(model[0].weight == 0, zeros)
    assert not torch.equal(books, model[0].weight_codebook.detach())
    assert torch.unique(model[0].weight[~zeros]).numel() <= 15


def test_centroid_gradient_is_sum_of_weight_gradients():
    model = mlp((12, 9, 4))
    quantize(model, bits=3)
    dense = copy.deepcopy(model)
    dequantize(dense)
    x, y = torch.randn(16, 12), torch.randint(0, 4, (16,))
    torch.nn.functional.cross_entropy(model(x), y).backward()
    torch.nn.functional.cross_entropy(dense(x), y).backward()
    for i in (0, 2):
        index = model[i].weight_index.long().reshape(-1)
        want = torch.zeros(8).index_add_(0, index, dense[i].weight.grad.reshape(-1))[1:]
        torch.testing.assert_close(model[i].weight_codebook.grad, want)


def test_ternary():
    model = mlp((30, 20, 5))
    w = model[0].weight.detach().clone()
    quantize(model, method="ternary")
    codebook, index = quantized_tensors(model)["0.weight"]
    delta = 0.7 * w.abs().mean()
    torch.testing.assert_close(codebook[1], w[w > delta].mean())
    torch.testing.assert_close(codebook[0], w[w < -delta].mean())
    assert torch.equal(index == 0, w.abs() <= delta)
    assert set(torch.unique(model[0].weight).tolist()) == {0.0, *codebook.tolist()}


def test_bits_per_type_bias_bits_and_conv():
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.Flatten(), torch.nn.Linear(16, 3))
    summary = quantize(model, bits={"Conv2d": 3}, bias_bits=2)
    assert summary == {"0.weight": 7, "0.bias": 3}
    assert "weight" in model[2]._parameters     # Linear not named: left alone
    assert model(torch.randn(2, 2, 4, 4)).shape == (2, 3)


def test_pickle_deepcopy_dequantize_same_outputs():
    model = mlp((10, 8, 3))
    quantize(model, bits=2, bias_bits=2)
    x = torch.randn(4, 10)
    out = model(x)
    assert torch.equal(pickle.loads(pickle.dumps(model))(x), out)
    copied = copy.deepcopy(model)
    assert torch.equal(copied(x), out)
    assert dequantize(copied) == 4
    assert isinstance(copied[0].weight, torch.nn.Parameter)
    assert torch.equal(copied(x), out)


@pytest.mark.parametrize("kwargs, exc, name", [
    ({"bits": 0}, ValueError, "bits"),
    ({"bits": 17}, ValueError, "bits"),
    ({"bits": {"Linear": 20}}, ValueError, "bits['Linear']"),
    ({"bits": {"Linaer": 4}}, ValueError, "'Linaer'"),
    ({"bits": 2.0}, TypeError, "bits"),
    ({"bits": True}, TypeError, "bits"),
    ({"bias_bits": 0}, ValueError, "bias_bits"),
    ({"method": "ternery"}, ValueError, "method"),
    ({"init": "kmeans"}, ValueError, "init"),
    ({"n_threads": 0}, ValueError, "n_threads"),
    ({"layers": ["x"]}, ValueError, "layers"),
])
def test_bad_arguments_change_nothing(kwargs, exc, name, assert_model_unchanged):
    model = mlp((6, 5, 2))
    assert_model_unchanged(model, lambda: quantize(model, **kwargs), exc, name)


def test_nonfinite_and_twice(assert_model_unchanged):
    model = mlp((6, 5, 2))
    with torch.no_grad():
        model[2].weight[0, 0] = float("inf")
    assert_model_unchanged(model, lambda: quantize(model, bits=2), ValueError, "2.weight")
    model = mlp((6, 5, 2))
    quantize(model, bits=2, layers=["0"])
    assert_model_unchanged(model, lambda: quantize(model, bits=2), ValueError, "quantized already")


@pytest.mark.parametrize("init", ["random", "k-means++", "density"])
def test_same_rng_same_codebook_at_any_thread_count(init, assert_thread_invariant):
    def run(n_threads):
        model = mlp((40, 30, 5))
        quantize(model, bits=4, init=init, rng=7, n_threads=n_threads)
        return tuple(t.detach().numpy() for pair in quantized_tensors(model).values() for t in pair)

    assert_thread_invariant(run)
