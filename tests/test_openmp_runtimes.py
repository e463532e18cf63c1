"""torch and dlkernels in one process, imported in either order, each running parallel code.

torch's wheels carry their own libgomp, and so does a dlkernels wheel repaired by
auditwheel (under a mangled name): one process then holds two OpenMP runtimes,
each with its own thread pool. A source build links the system's libgomp, which
may be the very copy torch loads. Either way both must work in either import
order, also at the same time from two Python threads, and give the same results
as on one thread. Each case runs in a fresh interpreter, so a hang or a crash
fails the test instead of the run.
"""

from __future__ import annotations

import json
import textwrap

import pytest

CODE = textwrap.dedent("""
    import json, sys, threading
    import numpy as np
    if sys.argv[1] == "torch":
        import torch
        from dlkernels.sampling import AliasSampler
    else:
        from dlkernels.sampling import AliasSampler
        import torch

    torch.set_num_threads(2)
    values = np.arange(2_000_000, dtype=np.float64)
    want = float(np.sin(values).sum())

    def torch_sum():
        return float(torch.from_numpy(values).sin().sum())  # an OpenMP-parallel reduction

    sampler = AliasSampler(np.arange(1.0, 1001.0))
    one = sampler.sample(400_000, rng=3, n_threads=1)
    before = torch_sum()
    many = sampler.sample(400_000, rng=3, n_threads=4)
    after = torch_sum()

    # Both runtimes busy at once: torch in a thread, dlkernels in this one.
    out = {}
    worker = threading.Thread(target=lambda: out.update(torch=[torch_sum() for _ in range(3)]))
    worker.start()
    together = [sampler.sample(400_000, rng=3, n_threads=4) for _ in range(3)]
    worker.join()

    maps = open("/proc/self/maps").read() if sys.platform.startswith("linux") else ""
    print(json.dumps({
        "dlkernels_same": bool(np.array_equal(one, many))
                          and all(np.array_equal(one, t) for t in together),
        "torch_errors": [abs(s - want) for s in [before, after, *out["torch"]]],
        "runtimes": sorted({line.split()[-1] for line in maps.splitlines() if "libgomp" in line}),
    }))
""")


@pytest.mark.parametrize("first", ["torch", "dlkernels"])
def test_both_import_orders(run_python, first):
    pytest.importorskip("torch")
    proc = run_python("-c", CODE, first, timeout=240)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["dlkernels_same"]
    # float64 sums of 2e6 terms in a different order agree far better than this.
    assert max(result["torch_errors"]) < 1e-6 * 2_000_000
