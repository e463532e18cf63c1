"""save_compressed / load_compressed: identical outputs, every byte counted, corruption refused."""

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dlkernels.compress import (PruningWarning, compression_report, load_compressed,  # noqa: E402
                                prune_magnitude, quantize, save_compressed)

from .conftest import mlp  # noqa: E402


@pytest.fixture
def compressed(tmp_path):
    model = mlp()
    with pytest.warns(PruningWarning, match="'2'"):   # the global threshold empties the middle layer
        prune_magnitude(model, 0.9)
    quantize(model, bits=5, bias_bits=5)
    path = tmp_path / "m.fdlz"
    size = save_compressed(model, path)
    return model, path, size


def test_round_trip_identical_outputs(compressed):
    model, path, size = compressed
    assert os.path.getsize(path) == size
    loaded = load_compressed(path)
    x = torch.randn(100, 64)
    assert torch.equal(loaded(x), model(x))
    assert type(loaded) is torch.nn.Sequential and all(
        type(a) is type(b) for a, b in zip(loaded, model))


def test_report_counts_every_byte(compressed):
    model, path, size = compressed
    report = compression_report(model)
    assert report.file_bytes == size
    assert report.float32_bytes == 4 * sum(
        p.numel() for p in mlp().parameters())
    assert report.overhead_bytes > 0 and sum(r.bytes for r in report.layers) + report.overhead_bytes == size
    rows = {r.name: r for r in report.layers}
    assert rows["0.weight"].coding.startswith("quantized")
    assert rows["0.weight"].coder in ("rans", "huffman", "rans+rans", "huffman+rans", "rans+huffman")
    total_kept = sum(r.kept * r.weights for r in report.layers if r.name.endswith("weight"))
    assert total_kept == pytest.approx(0.1 * 50200, abs=1)
    text = str(report)
    assert "0.weight" in text and f"{size}" in text and "header, magic, CRC" in text


@pytest.mark.parametrize("prep", ["plain", "pruned", "ternary", "dense-quantized"])
def test_other_models_round_trip(prep, tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.BatchNorm2d(6),
                                torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                                torch.nn.Sequential(torch.nn.Linear(6 * 16, 10), torch.nn.GELU()),
                                torch.nn.Linear(10, 3, bias=False))
    model(torch.randn(4, 3, 8, 8))
    model.eval()
    if prep == "pruned":
        prune_magnitude(model, 0.7)
    elif prep == "ternary":
        quantize(model, method="ternary")
    elif prep == "dense-quantized":
        quantize(model, bits=3)
    save_compressed(model, tmp_path / "m.fdlz")
    loaded = load_compressed(tmp_path / "m.fdlz").eval()
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(loaded(x), model(x))
    assert torch.equal(loaded[1].num_batches_tracked, model[1].num_batches_tracked)


def test_custom_model_needs_skeleton(tmp_path):
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Linear(5, 4), torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.b(self.a(x).sin())

    net = Net()
    quantize(net, bits=2)
    save_compressed(net, tmp_path / "n.fdlz")
    with pytest.raises(ValueError, match="skeleton"):
        load_compressed(tmp_path / "n.fdlz")
    loaded = load_compressed(tmp_path / "n.fdlz", model=Net())
    x = torch.randn(3, 5)
    assert torch.equal(loaded(x), net(x))
    wrong = torch.nn.Sequential(torch.nn.Linear(5, 4))
    before = {k: v.clone() for k, v in wrong.state_dict().items()}
    with pytest.raises(ValueError, match="does not match"):
        load_compressed(tmp_path / "n.fdlz", model=wrong)
    assert all(torch.equal(before[k], v) for k, v in wrong.state_dict().items())


def test_dtypes_survive(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(4, 3)).to(torch.float64)
    save_compressed(model, tmp_path / "d.fdlz")
    loaded = load_compressed(tmp_path / "d.fdlz", model=torch.nn.Sequential(torch.nn.Linear(4, 3)).double())
    assert loaded[0].weight.dtype == torch.float64
    assert torch.equal(loaded[0].weight, model[0].weight)


def test_truncated_and_corrupted_files(compressed, tmp_path):
    _, path, size = compressed
    data = path.read_bytes()
    cases = {"truncated": data[: size // 2], "empty": b"", "short": data[:5],
             "flipped": data[:100] + bytes([data[100] ^ 1]) + data[101:],
             "magic": b"XXXX" + data[4:], "tail": data + b"\0"}
    for name, blob in cases.items():
        bad = tmp_path / f"{name}.fdlz"
        bad.write_bytes(blob)
        with pytest.raises(ValueError, match="not a valid compressed model"):
            load_compressed(bad)


def test_consistent_crc_but_bad_contents(compressed, tmp_path):
    """A file whose CRC is right but whose sections are inconsistent (a writer bug)."""
    import struct
    import zlib

    _, path, _ = compressed
    body = path.read_bytes()[:-4]
    for cut in (1, 50):
        short = body[:-cut]
        bad = tmp_path / f"cut{cut}.fdlz"
        bad.write_bytes(short + struct.pack("<I", zlib.crc32(short)))
        with pytest.raises(ValueError, match="not a valid compressed model"):
            load_compressed(bad)
    newer = body[:4] + bytes([9]) + body[5:]
    bad = tmp_path / "newer.fdlz"
    bad.write_bytes(newer + struct.pack("<I", zlib.crc32(newer)))
    with pytest.raises(ValueError, match="newer"):
        load_compressed(bad)


def test_nan_refused(tmp_path):
    model = mlp((4, 3, 2))
    with torch.no_grad():
        model[0].bias[1] = float("nan")
    with pytest.raises(ValueError, match="0.bias"):
        save_compressed(model, tmp_path / "x.fdlz")
    assert not (tmp_path / "x.fdlz").exists()


def test_random_tensors_round_trip(tmp_path):
    """Sparsity from none to all, and indices of every width, against the plain values."""
    rng = np.random.default_rng(5)
    for share in (0.0, 0.5, 0.97, 1.0):
        model = torch.nn.Sequential(torch.nn.Linear(37, 23))
        with torch.no_grad():
            w = torch.as_tensor(rng.standard_normal((23, 37)), dtype=torch.float32)
            w[torch.as_tensor(rng.random((23, 37)) < share)] = 0
            model[0].weight.copy_(w)
        if share < 1.0:
            quantize(model, bits=int(rng.integers(1, 8)))
        save_compressed(model, tmp_path / "r.fdlz")
        loaded = load_compressed(tmp_path / "r.fdlz")
        model(torch.zeros(1, 37))
        assert torch.equal(loaded[0].weight, model[0].weight)
