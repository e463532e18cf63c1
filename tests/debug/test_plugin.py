"""The pytest plugin (loaded through its entry point) and life without torch."""

from __future__ import annotations

import textwrap
from importlib import metadata


# Runs Python with torch made unimportable (as if it were not installed).
NO_TORCH = "import sys; sys.modules['torch'] = None\n"


def test_entry_point_is_registered():
    points = [ep for ep in metadata.entry_points(group="pytest11") if ep.name == "dlkernels"]
    assert [ep.value for ep in points] == ["dlkernels.pytest_plugin"]


def test_plugin_and_demo_without_torch(run_python):
    # One interpreter for the three checks: each start costs seconds on a busy machine.
    code = NO_TORCH + textwrap.dedent("""
        import dlkernels.pytest_plugin
        print("imported", "torch" in sys.modules and sys.modules["torch"] is not None)
        try:
            from dlkernels.debug import MemoryProfiler
        except ImportError as exc:
            print("ImportError:", exc)
        import numpy as np
        from dlkernels.demo import demo_debug
        demo_debug(np.random.default_rng(0))
    """)
    proc = run_python("-c", code)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines == [
        "imported False",
        'ImportError: dlkernels.debug needs torch: pip install "dlkernels[torch]"',
        "debug: skipped, torch is not installed (pip install 'dlkernels[torch]')",
    ]


def test_plugin_does_not_import_torch(run_python):
    proc = run_python("-c", "import sys, dlkernels.pytest_plugin; print('torch' in sys.modules)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


PLUGIN_TESTS = '''
import pytest
import torch
from torch import nn

def make():
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    return model, torch.optim.SGD(model.parameters(), lr=0.1), (torch.randn(8, 4), torch.randn(8, 1))

def test_step(check_training_step):
    model, opt, batch = make()
    assert check_training_step(model, nn.functional.mse_loss, batch, opt).ok

def test_checker(param_checker):
    model, opt, batch = make()
    param_checker.changes(model, nn.functional.mse_loss, batch, opt)
    param_checker.finite(model, nn.functional.mse_loss, batch, opt)
    param_checker.no_batch_mixing(model, batch[0])
    model[0].weight.requires_grad_(False)
    with pytest.raises(AssertionError, match="0.weight"):
        param_checker.changes(model, nn.functional.mse_loss, batch, opt, params=["0.weight"])

SHARED = nn.Sequential(nn.Linear(4, 8), nn.Tanh())

def test_profiler_left_open(memory_profiler):
    prof = memory_profiler(SHARED).__enter__()   # the fixture exits it at teardown
    SHARED(torch.randn(2, 4))
    assert nn.modules.module._global_forward_hooks and prof.module("0").calls == 1

def test_profiler_was_closed():
    assert not nn.modules.module._global_forward_hooks
    assert not nn.modules.module._global_forward_pre_hooks
'''


def test_fixtures_work_in_a_fresh_pytest_run(run_python, tmp_path):
    (tmp_path / "test_uses_fixtures.py").write_text(PLUGIN_TESTS)
    proc = run_python("-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error",
                      "test_uses_fixtures.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 passed" in proc.stdout


def test_fixtures_skip_without_torch(run_python, tmp_path):
    (tmp_path / "conftest.py").write_text("import sys\nsys.modules['torch'] = None\n")
    (tmp_path / "test_no_torch.py").write_text(
        "def test_step(check_training_step):\n    raise AssertionError('not reached')\n")
    proc = run_python("-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", "test_no_torch.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 skipped" in proc.stdout and "dlkernels.debug fixtures need torch" in proc.stdout
