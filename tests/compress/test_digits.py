"""The claim of the issue: a digits MLP of LeNet-300-100's shape compresses >= 30x
(every byte of the file counted) with test accuracy within 0.5 points."""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from dlkernels.demo import digits_compression  # noqa: E402
from dlkernels.compress import load_compressed  # noqa: E402


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_thirty_times_smaller_same_accuracy(seed, one_thread, tmp_path):
    path = tmp_path / "digits.fdlz"
    res = digits_compression(torch, seed, path=path)
    assert res["data"] == "scikit-learn's digits"
    assert res["float32_bytes"] == 4 * 50610
    assert res["bytes"] == path.stat().st_size
    assert res["ratio"] >= 30, res["report"]
    assert res["final"] >= res["base"] - 0.005, (res["base"], res["final"])
    # The file alone gives the same predictions.
    Xte, yte = res["test"]
    loaded = load_compressed(path)
    with torch.no_grad():
        assert torch.equal(loaded(Xte), res["model"](Xte))
