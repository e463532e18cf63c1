"""Without torch, each torch-level package fails on import with one ImportError saying what to install."""

from __future__ import annotations

import textwrap

import pytest

from dlkernels._lib.torch_import import require_torch

PACKAGES = ("dlkernels.nn", "dlkernels.decoding", "dlkernels.distill", "dlkernels.debug")


def test_without_torch_each_package_names_the_extra(run_python):
    # torch made unimportable, as if it were not installed; one interpreter for all packages.
    code = "import sys; sys.modules['torch'] = None\n" + textwrap.dedent(f"""
        import importlib
        for name in {PACKAGES!r}:
            try:
                importlib.import_module(name)
            except ImportError as exc:
                cause = type(exc.__cause__).__name__
                print(f"{{name}}|{{type(exc).__name__}}|{{exc}}|{{cause}}")
            else:
                print(f"{{name}}|imported")
        import dlkernels, dlkernels.sampling, dlkernels.neighbors, dlkernels.cluster
        print("core|", "torch" in sys.modules and sys.modules["torch"] is not None)
    """)
    proc = run_python("-c", code)
    assert proc.returncode == 0, proc.stderr
    expected = [f'{name}|ImportError|{name} needs torch: pip install "dlkernels[torch]"|'
                f'ModuleNotFoundError' for name in PACKAGES]
    assert proc.stdout.splitlines() == expected + ["core| False"]


def test_require_torch_returns_the_module():
    torch = pytest.importorskip("torch")
    assert require_torch("anything") is torch
