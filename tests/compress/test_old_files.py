"""Files written by earlier versions keep loading (format 1: the zlib-JSON header).

``data/v1_model.fdlz`` was written by the format-1 writer (commit 718510c) from a
model with every coding it had: quantized sparse and dense, a one-symbol stream,
sparse and raw floats, a BatchNorm with its int64 counter, a nested Sequential.
``data/v1_model_expected.npz`` holds the state it decoded to then, an input and
the model's output on it.
"""

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dlkernels.compress import load_compressed  # noqa: E402

DATA = Path(__file__).parent / "data"


def test_format_1_file_still_loads():
    path = DATA / "v1_model.fdlz"
    assert path.read_bytes()[4] == 1
    expected = np.load(DATA / "v1_model_expected.npz")
    model = load_compressed(path).eval()
    state = model.state_dict()
    names = {k.removeprefix("state/") for k in expected.files if k.startswith("state/")}
    assert set(state) == names
    for name in names:
        np.testing.assert_array_equal(state[name].numpy(), expected[f"state/{name}"], err_msg=name)
    with torch.no_grad():
        np.testing.assert_array_equal(model(torch.from_numpy(expected["x"])).numpy(), expected["y"])


def test_format_1_model_rewritten_in_format_2_is_equal(tmp_path):
    from dlkernels.compress import save_compressed

    old = DATA / "v1_model.fdlz"
    model = load_compressed(old)
    save_compressed(model, tmp_path / "new.fdlz")
    assert (tmp_path / "new.fdlz").read_bytes()[4] == 2
    again = load_compressed(tmp_path / "new.fdlz")
    for name, t in model.state_dict().items():
        assert torch.equal(again.state_dict()[name], t), name
