"""The ``dlkernels`` command (also ``python -m dlkernels``)."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path


def _info(args: argparse.Namespace) -> int:
    import importlib.util

    import dlkernels

    # Read before torch is imported: torch may set the thread count of an OpenMP
    # runtime it shares with dlkernels (a build that links the system's libgomp).
    config = dlkernels.config()
    if importlib.util.find_spec("torch") is not None:
        import torch  # noqa: F401  (imported so that CUDA can be reported)

        config.update(dlkernels._torch_config())
    dlkernels._print_config(config)
    return 0


def _demo(args) -> int:
    from dlkernels import demo

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
    how = ("From a dlkernels source checkout: `make bench`, or\n"
           "  pip install 'dlkernels[bench]' && cd bench && asv machine --yes && "
           "asv run --python=same --quick --show-stderr")
    if bench is None or asv is None:
        missing = "the bench/ folder of a source checkout" if bench is None else "asv"
        print(f"dlkernels bench needs {missing}.\n{how}")
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


def _load_module(path: str, trust: bool):
    """A full ``nn.Module`` saved with ``torch.save(model, path)``.

    Loaded with ``weights_only=True`` and only torch's own layer classes allowed,
    so a file cannot run code; ``--trust`` lifts that for models of other classes.
    """
    import torch

    if trust:
        return torch.load(path, map_location="cpu", weights_only=False)
    from dlkernels.compress._arch import LAYERS

    allowed = [getattr(torch.nn, name) for name in LAYERS]
    allowed.append(torch.nn.Sequential)
    with torch.serialization.safe_globals(allowed):
        return torch.load(path, map_location="cpu", weights_only=True)


def _compress(args) -> int:
    try:
        import torch  # noqa: F401
    except ImportError:
        print("dlkernels compress needs torch: pip install 'dlkernels[torch]'", file=sys.stderr)
        return 1
    from dlkernels.compress import compression_report, prune_magnitude, quantize, save_compressed

    problem = _output_problem(args.output)
    if problem:
        print(f"dlkernels compress: error: --output {args.output}: {problem}", file=sys.stderr)
        return 2
    try:
        model = _load_module(args.input, args.trust)
    except Exception as exc:  # unpickling errors come in many types
        print(f"dlkernels compress: cannot load {args.input} as a torch.nn.Module "
              f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
              f"Save it with torch.save(model, path); for layers other than torch's own, "
              f"pass --trust (the file is then unpickled: only for files you trust).",
              file=sys.stderr)
        return 1
    if not isinstance(model, torch.nn.Module):
        print(f"dlkernels compress: {args.input} holds a {type(model).__name__}, not a "
              f"torch.nn.Module (a state_dict alone has no architecture)", file=sys.stderr)
        return 1
    try:
        if args.amount:
            prune_magnitude(model, args.amount, scope=args.scope)
        if args.bits:
            quantize(model, bits=args.bits, bias_bits=args.bias_bits)
        size = save_compressed(model, args.output)
    except (TypeError, ValueError) as exc:
        print(f"dlkernels compress: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"dlkernels compress: error: cannot write {args.output}: {exc.strerror or exc}",
              file=sys.stderr)
        return 2
    report = compression_report(model)
    if args.report:
        print(report)
    print(f"wrote {args.output}: {size} bytes, {report.ratio:.1f}x smaller than float32 "
          f"({report.float32_bytes} bytes)")
    return 0


def _output_problem(path: str) -> str | None:
    """Why ``path`` cannot receive the output file, checked before any work is done."""
    if os.path.isdir(path):
        return "is a directory; give a file name such as " + os.path.join(path, "model.fdlz")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return f"the folder {folder} does not exist"
    if not os.access(folder, os.W_OK):
        return f"the folder {folder} is not writable"
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dlkernels", description=__doc__)
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
    comp = sub.add_parser("compress", help="prune, quantize and Huffman-code a saved torch model")
    comp.add_argument("input", help="a torch.save(model, path) file of a full nn.Module")
    comp.add_argument("--output", "-o", required=True, help="the compressed file (.fdlz)")
    comp.add_argument("--amount", type=float, default=0.0,
                      help="share of weights to prune by magnitude, in [0, 1) (default 0)")
    comp.add_argument("--scope", choices=("global", "layer"), default="global",
                      help="prune with one threshold for the model or per layer")
    comp.add_argument("--bits", type=int, default=5,
                      help="index bits per Linear/Conv layer, 1..16; 0 keeps float weights "
                           "(default 5)")
    comp.add_argument("--bias-bits", type=int, default=None,
                      help="also share each layer's bias among 2**B - 1 values")
    comp.add_argument("--report", action="store_true", help="print the per-layer report")
    comp.add_argument("--trust", action="store_true",
                      help="unpickle INPUT fully (runs code from the file: trusted files only)")
    comp.set_defaults(run=_compress)
    _add_node2vec(sub)
    return parser


def _add_node2vec(sub) -> None:
    # The flags of the reference node2vec tool (and PecanPy), so scripts carry over.
    cmd = sub.add_parser("node2vec", help="node2vec embeddings of an edge-list graph, "
                         "written in word2vec text format")
    cmd.add_argument("--input", required=True, help="edge list: 'src dst [weight]' per line")
    cmd.add_argument("--output", required=True, help="where to write the embeddings")
    cmd.add_argument("--dimensions", type=int, default=128, help="vector size (default 128)")
    cmd.add_argument("--walk-length", type=int, default=80, help="nodes per walk (default 80)")
    cmd.add_argument("--num-walks", type=int, default=10, help="walks per node (default 10)")
    cmd.add_argument("--window-size", type=int, default=10, help="context size (default 10)")
    cmd.add_argument("--iter", "--epochs", dest="iter", type=int, default=1,
                     help="training epochs (default 1)")
    cmd.add_argument("--workers", type=int, default=None,
                     help="threads (default: OpenMP's default)")
    cmd.add_argument("--p", type=float, default=1.0, help="return parameter (default 1)")
    cmd.add_argument("--q", type=float, default=1.0, help="in-out parameter (default 1)")
    cmd.add_argument("--weighted", action="store_true", help="read a weight column")
    cmd.add_argument("--directed", action="store_true", help="edges go one way")
    cmd.add_argument("--seed", type=int, default=None, help="random seed (default: fresh)")
    cmd.add_argument("--progress", action="store_true", help="show progress bars")
    cmd.set_defaults(run=_node2vec)


def _node2vec(args) -> int:
    import time

    from dlkernels.graph import Graph, Node2Vec

    start = time.perf_counter()
    try:
        graph = Graph.read_edgelist(args.input, weighted=args.weighted, directed=args.directed,
                                    n_threads=args.workers)
        model = Node2Vec(dim=args.dimensions, walk_length=args.walk_length,
                         walks_per_node=args.num_walks, p=args.p, q=args.q,
                         window=args.window_size, epochs=args.iter, rng=args.seed,
                         n_threads=args.workers)
        model.fit(graph, progress=args.progress)
        model.save_word2vec_format(args.output)
    except (OSError, TypeError, ValueError) as exc:
        print(f"dlkernels node2vec: error: {exc}", file=sys.stderr)
        return 2
    print(f"{graph.n_nodes} nodes, {graph.n_edges} edges -> {args.output} "
          f"({args.dimensions}-d, {time.perf_counter() - start:.2f} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
