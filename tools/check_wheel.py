"""Check a repaired wheel as a user gets it (run by `make wheel` in a fresh venv).

    python tools/check_wheel.py dist/

Checks that the sdist and the wheel carry the LICENSE, that the wheel is a
manylinux wheel with its own OpenMP runtime (on Linux), that this interpreter
imports dlkernels from that wheel with no C compiler on PATH, and that a
parallel kernel runs on the bundled runtime and gives the single-thread result.
Exits non-zero with a message at the first failure.
"""

from __future__ import annotations

import shutil
import sys
import tarfile
import zipfile
from pathlib import Path


def fail(message: str) -> None:
    sys.exit(f"check_wheel: {message}")


def check_archives(dist: Path) -> Path:
    wheels = sorted(dist.glob("dlkernels-*.whl"))
    sdists = sorted(dist.glob("dlkernels-*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        fail(f"expected one wheel and one sdist in {dist}, found {wheels + sdists}")
    wheel, sdist = wheels[0], sdists[0]
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    if not any(n.endswith(".dist-info/licenses/LICENSE") for n in names):
        fail(f"{wheel.name} has no .dist-info/licenses/LICENSE")
    with tarfile.open(sdist) as t:
        if not any(n.endswith("/LICENSE") and n.count("/") == 1 for n in t.getnames()):
            fail(f"{sdist.name} has no top-level LICENSE")
    if sys.platform.startswith("linux"):
        if "manylinux" not in wheel.name:
            fail(f"{wheel.name} is not a manylinux wheel: was it repaired by auditwheel?")
        if not any(n.startswith("dlkernels.libs/libgomp") for n in names):
            fail(f"{wheel.name} does not bundle libgomp")
    return wheel


def check_installed() -> None:
    for compiler in ("cc", "gcc", "clang"):
        if shutil.which(compiler):
            fail(f"a C compiler is on PATH ({shutil.which(compiler)}): the check must run "
                 f"without one")
    import numpy as np

    import dlkernels
    from dlkernels.sampling import AliasSampler

    where = Path(dlkernels.__file__).resolve()
    if "site-packages" not in where.parts or not where.is_relative_to(Path(sys.prefix).resolve()):
        fail(f"dlkernels was imported from {where}, not from this venv's site-packages")
    sampler = AliasSampler(np.arange(1.0, 1001.0))
    one = sampler.sample(200_000, rng=7, n_threads=1)
    many = sampler.sample(200_000, rng=7, n_threads=4)
    if not np.array_equal(one, many):
        fail("AliasSampler.sample differs between 1 and 4 threads")
    if sys.platform.startswith("linux"):
        maps = Path("/proc/self/maps").read_text()
        gomp = sorted({line.split()[-1] for line in maps.splitlines() if "libgomp" in line})
        if not gomp or not all("dlkernels.libs" in path for path in gomp):
            fail(f"expected only the bundled libgomp to be loaded, found {gomp}")
        print(f"check_wheel: OpenMP runtime {gomp[0]}")
    print(f"check_wheel: dlkernels {dlkernels.__version__} from {where.parent}: ok")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        fail("usage: python tools/check_wheel.py DIST_FOLDER")
    check_archives(Path(sys.argv[1]))
    check_installed()
