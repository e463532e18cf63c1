"""dlkernels._lib.arrays: numpy in, numpy out; torch in, torch out (CPU tensors zero-copy)."""

import numpy as np
import pytest

from dlkernels._lib.arrays import is_cuda_tensor, is_tensor, like_input, to_numpy


def test_numpy_passes_through():
    x = np.arange(5)
    assert not is_tensor(x) and not is_cuda_tensor(x)
    assert to_numpy(x) is x
    assert like_input(x, np.zeros(1)) is x
    assert like_input(x, None) is x


def test_core_does_not_import_torch(run_python):
    code = ("import sys, numpy as np, dlkernels, dlkernels.sampling as s\n"
            "s.AliasSampler([1.0, 2.0]).sample(10, rng=0)\n"
            "s.SumTree.from_weights([1.0, 2.0]).sample(10, rng=0)\n"
            "s.NegativeSampler([3, 1, 2]).pairs([[0, 1]], 2, rng=0)\n"
            "dlkernels.config()\n"
            "print('torch' in sys.modules)")
    proc = run_python("-c", code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


class TestTorch:
    @pytest.fixture(autouse=True)
    def torch(self):
        return pytest.importorskip("torch")

    def test_cpu_tensor_is_viewed_without_copy(self, torch):
        t = torch.arange(6, dtype=torch.float64)
        assert is_tensor(t) and not is_cuda_tensor(t)
        view = to_numpy(t)
        assert isinstance(view, np.ndarray)
        t[2] = 40.0
        assert view[2] == 40.0

    def test_grad_and_conj_tensors(self, torch):
        t = torch.ones(3, requires_grad=True)
        np.testing.assert_array_equal(to_numpy(t), np.ones(3, np.float32))
        c = torch.tensor([1 + 2j, 3 - 1j]).conj()
        np.testing.assert_array_equal(to_numpy(c), np.array([1 - 2j, 3 + 1j]))

    def test_like_input_returns_tensor_on_template_device(self, torch):
        result = np.arange(12, dtype=np.int64).reshape(3, 4)[:, ::2]  # not contiguous
        out = like_input(result, torch.empty(0))
        assert isinstance(out, torch.Tensor) and out.device.type == "cpu"
        assert out.dtype == torch.int64
        np.testing.assert_array_equal(out.numpy(), result)
