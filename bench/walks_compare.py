"""node2vec walks: dlkernels against PecanPy's SparseOTF, same run, steps/s and peak memory.

    python bench/walks_compare.py                          # the issue-5 setup, 2 threads
    python bench/walks_compare.py --threads 1 2 --repeat 3 --plot docs/_static/walks_throughput.png
    python bench/walks_compare.py --pecanpy-python /tmp/venv-pecanpy/bin/python

Setup (issue 5): an Erdős–Rényi-like undirected graph of 100k nodes and 1M
random edges (fixed seed; repeats and self-loops dropped, unweighted), p=0.5,
q=2, walks of length 80 from every node. Steps/s is the figure, so the number of
walks per node is a knob (default 2: 200k walks, 16M steps per run).

Each run is a fresh subprocess that builds the graph from the same edge arrays,
times the walks, and reports its peak resident memory (``ru_maxrss``, graph and
walks included) and its resident memory before the walks. The runs of the two
implementations alternate within each repeat (a change in machine load hits
both) and each keeps its best repeat; ratios are PecanPy time / dlkernels time.

PecanPy is timed at its compiled core: ``SparseOTF._random_walks`` with the
``move_forward`` closure built once and its JIT warmed on a few walks first, so
neither numba compilation nor PecanPy's conversion of the walks to lists of
string ids is counted (both would only make PecanPy slower). Its thread count is
``NUMBA_NUM_THREADS``. PecanPy needs numpy < 2 today; give the python of an
environment that has it with ``--pecanpy-python`` (default: this python).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

# `python bench/walks_compare.py` puts bench/ on sys.path, which makes this importable.
from benchmarks.graph_walks import pecanpy_walker, random_edges


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def worker_dlkernels(args, src, dst):
    from dlkernels.graph import Graph, random_walks

    g = Graph.from_edges(src, dst, n_nodes=args.nodes)
    random_walks(g, walk_length=args.length, walks_per_node=1, p=args.p, q=args.q, rng=0,
                 start_nodes=np.arange(100), n_threads=args.threads)  # page in the module
    before = rss_mb()
    start = time.perf_counter()
    walks = random_walks(g, walk_length=args.length, walks_per_node=args.walks_per_node,
                         p=args.p, q=args.q, rng=1, n_threads=args.threads)
    seconds = time.perf_counter() - start
    return seconds, int(walks.size), before, int(g.indices.size)


def worker_pecanpy(args, src, dst):
    from numba_progress import ProgressBar

    n = args.nodes
    g, move_forward, has_nbrs = pecanpy_walker(src, dst, n, args.p, args.q, args.threads)
    # PecanPy's walk_length counts steps after the start node: length - 1 gives
    # walks of `length` nodes, as dlkernels's rows are.
    steps_after_start = args.length - 1
    with ProgressBar(total=1, disable=True) as progress:
        warm = np.arange(100, dtype=np.uint32)
        g._random_walks(warm.size, steps_after_start, None, warm, has_nbrs, move_forward,
                        progress)
        starts = np.concatenate([np.arange(n, dtype=np.uint32)] * args.walks_per_node)
        np.random.default_rng(0).shuffle(starts)  # as simulate_walks does, for load balance
        before = rss_mb()
        start = time.perf_counter()
        walks = g._random_walks(starts.size, steps_after_start, None, starts, has_nbrs,
                                move_forward, progress)
        seconds = time.perf_counter() - start
    # The last column holds each walk's number of nodes.
    return seconds, int(walks[:, -1].sum()), before, int(g.indices.size)


def worker(args):
    args.threads = args.threads[0]
    with np.load(args.edges_file) as data:
        src, dst = data["src"], data["dst"]
    run = worker_dlkernels if args.worker == "dlkernels" else worker_pecanpy
    seconds, nodes_out, before, nnz = run(args, src, dst)
    print(json.dumps({"seconds": seconds, "nodes": nodes_out, "rss_before_mb": before,
                      "peak_mb": peak_mb(), "nnz": nnz}))


def run_worker(python, impl, args, edges_file, threads):
    cmd = [python, os.path.abspath(__file__), "--worker", impl, "--edges-file", edges_file,
           "--nodes", str(args.nodes), "--length", str(args.length), "--p", str(args.p),
           "--q", str(args.q), "--walks-per-node", str(args.walks_per_node),
           "--threads", str(threads)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), NUMBA_NUM_THREADS=str(threads))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{impl} worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--edges", type=int, default=1_000_000)
    parser.add_argument("--length", type=int, default=80)
    parser.add_argument("--walks-per-node", type=int, default=2)
    parser.add_argument("--p", type=float, default=0.5)
    parser.add_argument("--q", type=float, default=2.0)
    parser.add_argument("--threads", type=int, nargs="+", default=[2])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--pecanpy-python", default=sys.executable)
    parser.add_argument("--skip-pecanpy", action="store_true")
    parser.add_argument("--plot", help="write a steps/s bar chart here (matplotlib)")
    parser.add_argument("--table", help="write the results as an rst table here (for the docs)")
    parser.add_argument("--worker", choices=["dlkernels", "pecanpy"], help=argparse.SUPPRESS)
    parser.add_argument("--edges-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    impls = {"dlkernels": sys.executable}
    if not args.skip_pecanpy:
        impls["pecanpy"] = args.pecanpy_python
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{args.nodes} nodes, {args.edges} random edges (undirected, unweighted), "
          f"p={args.p}, q={args.q}, walk length {args.length}, "
          f"{args.walks_per_node} walks per node; best of {args.repeat}", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        edges_file = os.path.join(tmp, "edges.npz")
        src, dst = random_edges(args.nodes, args.edges, args.seed)
        np.savez(edges_file, src=src, dst=dst)
        for threads in args.threads:
            for _ in range(args.repeat):
                for impl, python in impls.items():
                    r = run_worker(python, impl, args, edges_file, threads)
                    best = results.get((impl, threads))
                    if best is None or r["seconds"] < best["seconds"]:
                        results[impl, threads] = r
    print(f"{'impl':>8} {'threads':>7} {'seconds':>8} {'Msteps/s':>9} {'peak MB':>8} "
          f"{'RSS before walks MB':>20}")
    for (impl, threads), r in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        r["steps_per_s"] = r["nodes"] / r["seconds"]
        print(f"{impl:>8} {threads:>7} {r['seconds']:8.2f} {r['steps_per_s'] / 1e6:9.2f} "
              f"{r['peak_mb']:8.0f} {r['rss_before_mb']:20.0f}")
    for threads in args.threads:
        if ("pecanpy", threads) in results:
            ratio = results["dlkernels", threads]["steps_per_s"] / results["pecanpy", threads]["steps_per_s"]
            print(f"steps/s ratio dlkernels / pecanpy at {threads} thread(s): {ratio:.1f}x "
                  f"(target >= 10x)")
    if args.plot:
        plot(results, args)
    if args.table:
        table(results, args)


def table(results, args):
    rows = []
    for (impl, threads), r in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        ratio = ""
        if impl == "dlkernels" and ("pecanpy", threads) in results:
            ratio = f"{r['steps_per_s'] / results['pecanpy', threads]['steps_per_s']:.1f}x"
        name = "PecanPy SparseOTF" if impl == "pecanpy" else "dlkernels"
        rows.append((name, str(threads), f"{r['steps_per_s'] / 1e6:.2f}", f"{r['peak_mb']:.0f}",
                     f"{r['rss_before_mb']:.0f}", ratio))
    head = ("implementation", "threads", "M steps/s", "peak RSS (MB)", "RSS before walks (MB)",
            "dlkernels / PecanPy")
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    rule = "  ".join("=" * w for w in widths)
    lines = [rule, "  ".join(h.ljust(w) for h, w in zip(head, widths)), rule]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.append(rule)
    with open(args.table, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {args.table}")


def plot(results, args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    impls = sorted({impl for impl, _ in results})
    threads = sorted({t for _, t in results})
    fig, ax = plt.subplots(figsize=(6, 3.6))
    width = 0.8 / len(impls)
    for i, impl in enumerate(impls):
        values = [results[impl, t]["steps_per_s"] / 1e6 if (impl, t) in results else 0.0
                  for t in threads]
        bars = ax.bar(np.arange(len(threads)) + i * width, values, width,
                      label="PecanPy SparseOTF" if impl == "pecanpy" else "dlkernels")
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set_xticks(np.arange(len(threads)) + width * (len(impls) - 1) / 2)
    ax.set_xticklabels([f"{t} thread{'s' if t > 1 else ''}" for t in threads])
    ax.set_ylabel("million steps / s")
    ax.set_title(f"node2vec walks, {args.nodes // 1000}k nodes, {args.edges // 1000}k edges, "
                 f"p={args.p:g}, q={args.q:g}", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.plot, dpi=120)
    print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
