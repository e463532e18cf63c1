"""fine_tune: trains codebooks and kept weights, keeps zeros and sharing intact."""

import pytest

torch = pytest.importorskip("torch")

from dlkernels.compress import fine_tune, prune_magnitude, quantize, quantized_tensors  # noqa: E402

from .conftest import mlp  # noqa: E402


def data(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 20, generator=g)
    y = (x[:, :5].sum(1) > 0).long() + 2 * (x[:, 5:10].sum(1) > 0).long()
    return [(x[i:i + 32], y[i:i + 32]) for i in range(0, 256, 32)]


def test_loss_falls_and_structure_stays():
    model = mlp((20, 30, 4))
    prune_magnitude(model, 0.7)
    zeros = [model[i].weight == 0 for i in (0, 2)]
    quantize(model, bits=3)
    books = [c.detach().clone() for c, _ in quantized_tensors(model).values()]
    model.eval()
    history = fine_tune(model, data(), epochs=5, lr=1e-2)
    assert len(history) == 5 and history[-1] < history[0]
    assert not model.training
    for i, z in zip((0, 2), zeros):
        assert torch.equal(model[i].weight == 0, z)
        assert torch.unique(model[i].weight[~z]).numel() <= 7
    assert not all(torch.equal(a, c.detach()) for a, (c, _) in zip(books, quantized_tensors(model).values()))


@pytest.mark.parametrize("kwargs, exc, name", [
    ({"epochs": 0}, ValueError, "epochs"),
    ({"lr": 0.0}, ValueError, "lr"),
    ({"optimizer": "adam"}, TypeError, "optimizer"),
])
def test_bad_arguments(kwargs, exc, name, assert_model_unchanged):
    model = mlp((20, 30, 4))
    assert_model_unchanged(model, lambda: fine_tune(model, data(), **kwargs), exc, name)


def test_empty_batches():
    with pytest.raises(ValueError, match="batches"):
        fine_tune(mlp((20, 30, 4)), [])
