"""require_torch: one ImportError with the install command when torch is missing."""

import subprocess
import sys
import textwrap

import pytest

from dlkernels._lib.torch_import import require_torch

# Blocks torch in a fresh interpreter: the import system treats a None entry in
# sys.modules as "not importable" and raises ModuleNotFoundError.
BLOCK_TORCH = "import sys; sys.modules['torch'] = None\n"


def run_without_torch(code: str, cwd) -> subprocess.CompletedProcess:
    # cwd outside the checkout: `-c` puts the working directory first on sys.path.
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=120, cwd=cwd)


def test_import_nn_without_torch(tmp_path):
    result = run_without_torch("""
        try:
            import dlkernels.nn
        except ImportError as exc:
            print(type(exc).__name__, '|', exc, '|', type(exc.__cause__).__name__)
        else:
            print('imported')
    """, tmp_path)
    assert result.returncode == 0, result.stderr
    kind, message, cause = (part.strip() for part in result.stdout.split("|"))
    assert kind == "ImportError"             # exactly ImportError, not ModuleNotFoundError
    assert 'pip install "dlkernels[torch]"' in message
    assert "dlkernels.nn needs PyTorch" in message
    assert cause == "ModuleNotFoundError"


def test_core_still_imports_without_torch(tmp_path):
    result = run_without_torch("import dlkernels.sampling, dlkernels.neighbors; print('ok')",
                               tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_require_torch_with_torch():
    torch = pytest.importorskip("torch")
    assert require_torch("anything") is torch


def test_require_torch_message_names_the_feature(tmp_path):
    result = run_without_torch("""
        from dlkernels._lib.torch_import import require_torch
        try:
            require_torch('dlkernels.decoding')
        except ImportError as exc:
            print(exc)
    """, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("dlkernels.decoding needs PyTorch")
