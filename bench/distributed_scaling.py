"""dlkernels.distributed on 1 and 2 Dask worker processes against the one-process call.

Walks: a random graph of 100,000 nodes and 1,000,000 undirected edges, 10 walks
of 80 nodes per node (p=0.5, q=2), kept on the workers (``persist``), with the
graph scattered once or memory-mapped by each worker from its file. Sharded
search: 1e6 points in 3-D, 1e5 queries, k=10, data in two blocks (two shards)
in every run so that 1 and 2 workers do the same work; tree building and
queries are timed apart.

Parallel efficiency is T(1 worker) / (2 * T(2 workers)); the overhead is
T(1 worker) / T(one process, one thread). Each figure is the best of
``--repeat`` runs. The machine's load average is printed before and after:
on a shared machine other processes take cores from the workers.

    .venv/bin/python bench/distributed_scaling.py [--quick] [--repeat 3] [--write]

``--write`` also writes the table for the docs (docs/_static/distributed_table.inc).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def walk_case(args):
    from dlkernels.graph import Graph, random_walks

    rng = np.random.default_rng(0)
    g = Graph.from_edges(rng.integers(0, args.nodes, args.edges),
                         rng.integers(0, args.nodes, args.edges), n_nodes=args.nodes)
    return g, lambda: random_walks(g, 80, 10, p=0.5, q=2.0, rng=1, n_threads=1)


def search_case(args):
    rng = np.random.default_rng(0)
    return rng.standard_normal((args.points, 3)), rng.standard_normal((args.queries, 3))


def run_dask(n_workers, args, graph, path, X, Q) -> dict:
    import dask.array as da
    from distributed import Client, LocalCluster, wait

    from dlkernels.distributed import ShardedKDTree, random_walks

    out = {}
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                      host="127.0.0.1", dashboard_address=None) as cluster, \
            Client(cluster) as client:
        def walks(source):
            arr = random_walks(source, 80, 10, p=0.5, q=2.0, rng=1,
                               walks_per_chunk=args.walks_per_chunk).persist()
            wait(arr)
            del arr

        walks(path)   # warm: every worker imports dlkernels and maps the graph once
        out["walks (scattered graph)"] = best(lambda: walks(graph), args.repeat)
        out["walks (graph file, mmap)"] = best(lambda: walks(path), args.repeat)
        data = da.from_array(X, chunks=(X.shape[0] // 2, 3))
        trees = []
        out["KDTree build"] = best(lambda: trees.append(ShardedKDTree(data, leafsize=16,
                                                                      n_threads=1)), args.repeat)
        sharded = trees[-1]
        out["KDTree query"] = best(lambda: sharded.query(Q, 10, n_threads=1), args.repeat)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of every size")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--walks-per-chunk", type=int, default=20_000)
    parser.add_argument("--write", action="store_true", help="write the docs' table too")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    args.nodes, args.edges = 100_000 // scale, 1_000_000 // scale
    args.points, args.queries = 1_000_000 // scale, 100_000 // scale

    from dlkernels.neighbors import KDTree

    load_before = os.getloadavg()
    graph, local_walks = walk_case(args)
    X, Q = search_case(args)
    local = {"walks (scattered graph)": best(local_walks, args.repeat)}
    local["walks (graph file, mmap)"] = local["walks (scattered graph)"]
    tree = []
    local["KDTree build"] = best(lambda: tree.append(KDTree(X, leafsize=16, n_threads=1)),
                                 args.repeat)
    local["KDTree query"] = best(lambda: tree[-1].query(Q, 10, n_threads=1), args.repeat)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "graph.npz")
        graph.save(path)
        one = run_dask(1, args, graph, path, X, Q)
        two = run_dask(2, args, graph, path, X, Q)
    load_after = os.getloadavg()

    load = (f"{os.cpu_count()} CPUs; load average (1, 5, 15 min) before "
            f"{', '.join(f'{x:.1f}' for x in load_before)}, after "
            f"{', '.join(f'{x:.1f}' for x in load_after)}")
    sizes = (f"walks: {args.nodes} nodes, {args.edges} edges, 10 x 80 per node; search: "
             f"{args.points} x 3-D points, {args.queries} queries, k=10; best of {args.repeat}")
    columns = ["task", "1 process", "1 worker", "2 workers", "overhead", "efficiency"]
    rows = [[task, f"{local[task]:.2f} s", f"{one[task]:.2f} s", f"{two[task]:.2f} s",
             f"{one[task] / local[task]:.2f}x", f"{one[task] / (2 * two[task]):.2f}"]
            for task in local]
    widths = [max(len(r[i]) for r in [columns] + rows) for i in range(len(columns))]
    rule = "  ".join("=" * w for w in widths)
    table = [rule, "  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip(), rule]
    table += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows] + [rule]
    print(load)
    print(sizes)
    print("\n".join(table))
    if args.write:
        path = os.path.join(os.path.dirname(__file__), "..", "docs", "_static",
                            "distributed_table.inc")
        with open(path, "w") as f:
            f.write(f".. Written by bench/distributed_scaling.py. {sizes}.\n\n"
                    f"{load}.\n\n" + "\n".join(table) + "\n")


if __name__ == "__main__":
    main()
