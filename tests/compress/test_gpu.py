"""dlkernels.compress on CUDA tensors (skipped without a GPU)."""

import pytest

torch = pytest.importorskip("torch")

from dlkernels.compress import (PruningWarning, load_compressed, prune_magnitude,  # noqa: E402
                                prune_units, quantize, save_compressed)

from .conftest import mlp  # noqa: E402

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_prune_quantize_fine_tune_on_cuda(tmp_path):
    model = mlp().cuda()
    with pytest.warns(PruningWarning, match="'2'"):   # the global threshold empties the middle layer
        prune_magnitude(model, 0.9)
    assert model[0].weight_mask.is_cuda
    quantize(model, bits=5, bias_bits=5)
    assert model[0].weight_codebook.is_cuda and model[0].weight_index.is_cuda
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(64, 64, device="cuda"), torch.randint(0, 10, (64,), device="cuda")
    zeros = model[0].weight == 0
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    out = model(x)
    assert torch.equal(model[0].weight == 0, zeros)
    save_compressed(model, tmp_path / "g.fdlz")
    loaded = load_compressed(tmp_path / "g.fdlz").cuda()
    torch.testing.assert_close(loaded(x), out)


def test_prune_units_on_cuda():
    model = mlp().cuda()
    small = prune_units(model, 0.5, round_to=1)
    assert small[0].weight.is_cuda and small[0].out_features == 150
    assert small(torch.randn(4, 64, device="cuda")).shape == (4, 10)


@pytest.mark.parametrize("case", ["resnet18", "transformer", "grouped", "export_fallback"])
def test_prune_units_on_cuda_equals_cpu(case):
    """The same units go on either device, and the CUDA copy computes what the CPU copy does."""
    from .test_structural_models import CASES, ready

    build, data = CASES[case]
    model, x = ready(build()), data()
    small = prune_units(model, 0.5, example_inputs=x)
    small_cuda = prune_units(model.cuda(), 0.5, example_inputs=x.cuda())
    assert all(t.is_cuda for t in small_cuda.state_dict().values())
    assert {k: v.shape for k, v in small.state_dict().items()} == \
        {k: v.shape for k, v in small_cuda.state_dict().items()}
    with torch.no_grad():
        torch.testing.assert_close(small_cuda(x.cuda()).cpu(), small(x), rtol=1e-4, atol=1e-4)


def test_compress_to_size_on_cuda(tmp_path):
    from dlkernels.compress import compress_to_size, round_codebooks

    torch.manual_seed(0)
    model = mlp((16, 32, 3)).cuda()
    x = torch.randn(256, 16, device="cuda")
    y = (x[:, 0] > 0).long()
    result = compress_to_size(model, [(x, y)], target_ratio=6, epochs=2, steps=2,
                              amounts=(0.0, 0.5, 0.8, 0.9))
    assert model[0].weight_codebook.is_cuda
    round_codebooks(model, 5)
    size = save_compressed(model, tmp_path / "c.fdlz")
    assert size <= result.budget_bytes
    loaded = load_compressed(tmp_path / "c.fdlz").cuda()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
