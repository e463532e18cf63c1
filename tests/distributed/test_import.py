"""Dask stays optional: imported on first use only, with a hint when it is missing."""


def test_import_dlkernels_never_imports_dask(run_python):
    proc = run_python("-c", "import sys, dlkernels, dlkernels.graph, dlkernels.embed, "
                            "dlkernels.distributed; "
                            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
                            "('dask', 'distributed')))")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_missing_dask_says_what_to_install(run_python):
    code = ("import sys; sys.modules['dask'] = None; sys.modules['distributed'] = None\n"
            "from dlkernels.distributed import random_walks\n"
            "from dlkernels.graph import Graph\n"
            "try:\n"
            "    random_walks(Graph.from_edges([0], [1]), 3, 1)\n"
            "except ImportError as exc:\n"
            "    print(exc)\n")
    proc = run_python("-c", code)
    assert proc.returncode == 0, proc.stderr
    assert 'pip install "dlkernels[dask]"' in proc.stdout
