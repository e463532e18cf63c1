"""The ``fastdl`` command (also ``python -m fastdl``)."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path


def _info(args) -> int:
    import fastdl

    fastdl.show_config()
    return 0


def _demo(args) -> int:
    from fastdl import demo

    demo.run(seed=args.seed)
    return 0


def _bench_dir() -> Path | None:
    # The asv suite lives in the source checkout, not in the wheel.
    here = Path.cwd()
    for root in (here, *here.parents):
        if (root / "bench" / "asv.conf.json").is_file():
            return root / "bench"
    return None


def _bench(args) -> int:
    bench = _bench_dir()
    asv = shutil.which("asv")
    how = ("From a fastdl source checkout: `make bench`, or\n"
           "  pip install 'fastdl[bench]' && cd bench && asv machine --yes && "
           "asv run --python=same --quick --show-stderr")
    if bench is None or asv is None:
        missing = "the bench/ folder of a source checkout" if bench is None else "asv"
        print(f"fastdl bench needs {missing}.\n{how}")
        return 1
    cmd = [asv, "run", "--python=same", "--show-stderr", "--set-commit-hash",
           _commit(bench)]
    if not args.full:
        cmd.append("--quick")
    if args.bench:
        cmd += ["--bench", args.bench]
    subprocess.run([asv, "machine", "--yes"], cwd=bench, check=True,
                   stdout=subprocess.DEVNULL)
    return subprocess.run(cmd, cwd=bench, env=os.environ.copy()).returncode


def _commit(bench: Path) -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=bench, check=True,
                              capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "0" * 40


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastdl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="version, build tools, OpenMP on or off, default threads"
                   ).set_defaults(run=_info)
    demo = sub.add_parser("demo", help="run each capability on embedded data, with timings")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.set_defaults(run=_demo)
    bench = sub.add_parser("bench", help="run the asv suite (quick mode) from a checkout")
    bench.add_argument("--full", action="store_true", help="full asv run instead of --quick")
    bench.add_argument("--bench", metavar="REGEX", help="only benchmarks matching REGEX")
    bench.set_defaults(run=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
