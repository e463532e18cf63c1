"""dlkernels.distributed on 1 and 2 Dask worker processes against the one-process call.

Walks: a random graph of 100,000 nodes and 1,000,000 undirected edges, 10 walks
of 80 nodes per node (p=0.5, q=2), kept on the workers (``persist``), with the
graph scattered once or memory-mapped by each worker from its file. Sharded
search: 1e6 points in 3-D, 1e5 queries, k=10, data in two blocks (two shards)
in every run so that 1 and 2 workers do the same work; tree building and
queries are timed apart.

Parallel efficiency is T(1 worker) / (2 * T(2 workers)); the overhead is
T(1 worker) / T(one process, one thread). Each figure is the best of
``--repeat`` runs, every case run in turn in each round (both clusters stay
up), so that a drifting load falls on every column alike. The machine's load
average is printed before and after: on a shared machine other processes take
cores from the workers. A reference line gives the two KD-tree shards queried
in one process: querying two trees of n/2 points costs about twice one tree of
n (a k-NN query's cost is mostly its descent and its k results), which is the
price of sharding rather than of Dask.

    .venv/bin/python bench/distributed_scaling.py [--quick] [--repeat 3] [--write]

``--write`` also writes the table for the docs (docs/_static/distributed_table.inc).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np


def interleaved(cases: dict, repeat: int) -> dict:
    """Best time of each case, the cases run in turn ``repeat`` times: on a shared machine
    the load drifts, and alternating spreads it over every column alike."""
    times = {name: [] for name in cases}
    for _ in range(repeat):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: min(t) for name, t in times.items()}


def local_cases(graph, X, Q, shards: int) -> dict:
    """The one-process calls, and the same sharded search run in one process (the
    work of querying ``shards`` trees and merging, without Dask)."""
    from dlkernels.distributed._merge import top_k
    from dlkernels.graph import random_walks
    from dlkernels.neighbors import KDTree

    parts = np.array_split(X, shards)
    offsets = np.cumsum([0] + [p.shape[0] for p in parts])
    trees = {}

    def sharded_query():
        answers = [trees["parts"][s].query(Q, 10, n_threads=1) for s in range(shards)]
        top_k([d for d, _ in answers], [i + offsets[s] for s, (_, i) in enumerate(answers)], 10)

    return {
        "walks": lambda: random_walks(graph, 80, 10, p=0.5, q=2.0, rng=1, n_threads=1),
        "KDTree build": lambda: trees.update(one=KDTree(X, leafsize=16, n_threads=1)),
        "KDTree build (2 shards)": lambda: trees.update(
            parts=[KDTree(p, leafsize=16, n_threads=1) for p in parts]),
        "KDTree query": lambda: trees["one"].query(Q, 10, n_threads=1),
        "KDTree query (2 shards)": sharded_query,
    }


def dask_cases(client, graph, path, X, Q, args) -> dict:
    import dask.array as da
    from distributed import wait

    from dlkernels.distributed import ShardedKDTree, random_walks

    def walks(source):
        arr = client.persist(random_walks(source, 80, 10, p=0.5, q=2.0, rng=1, client=client,
                                          walks_per_chunk=args.walks_per_chunk))
        wait(arr)
        del arr

    walks(path)   # warm: every worker imports dlkernels and maps the graph once
    data = da.from_array(X, chunks=(X.shape[0] // 2, 3))
    trees = [ShardedKDTree(data, client=client, leafsize=16, n_threads=1)]
    return {
        "walks (scattered graph)": lambda: walks(graph),
        "walks (graph file, mmap)": lambda: walks(path),
        "KDTree build": lambda: trees.append(ShardedKDTree(data, client=client, leafsize=16,
                                                           n_threads=1)),
        "KDTree query": lambda: trees[-1].query(Q, 10, n_threads=1),
    }


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

    from distributed import Client, LocalCluster

    from dlkernels.graph import Graph

    rng = np.random.default_rng(0)
    graph = Graph.from_edges(rng.integers(0, args.nodes, args.edges),
                             rng.integers(0, args.nodes, args.edges), n_nodes=args.nodes)
    X, Q = rng.standard_normal((args.points, 3)), rng.standard_normal((args.queries, 3))
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "graph.npz")
        graph.save(path)
        options = dict(threads_per_worker=1, processes=True, host="127.0.0.1",
                       dashboard_address=None)
        with LocalCluster(n_workers=1, **options) as c1, Client(c1) as one, \
                LocalCluster(n_workers=2, **options) as c2, Client(c2) as two:
            cases = {("1 process", k): v for k, v in local_cases(graph, X, Q, 2).items()}
            for label, client in (("1 worker", one), ("2 workers", two)):
                cases.update({(label, k): v for k, v in
                              dask_cases(client, graph, path, X, Q, args).items()})
            times = interleaved(cases, args.repeat)
    load_after = os.getloadavg()
    local = {"walks (scattered graph)": times["1 process", "walks"],
             "walks (graph file, mmap)": times["1 process", "walks"],
             "KDTree build": times["1 process", "KDTree build"],
             "KDTree query": times["1 process", "KDTree query"]}
    one = {k: times["1 worker", k] for k in local}
    two = {k: times["2 workers", k] for k in local}
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
    note = (f"The same two KD-tree shards in one process (no Dask): built in "
            f"{times['1 process', 'KDTree build (2 shards)']:.2f} s, queried and merged in "
            f"{times['1 process', 'KDTree query (2 shards)']:.2f} s")
    print(load)
    print(sizes)
    print("\n".join(table))
    print(note)
    if args.write:
        path = os.path.join(os.path.dirname(__file__), "..", "docs", "_static",
                            "distributed_table.inc")
        with open(path, "w") as f:
            f.write(f".. Written by bench/distributed_scaling.py. {sizes}.\n\n"
                    f"{load}.\n\n" + "\n".join(table) + f"\n\n{note}.\n")


if __name__ == "__main__":
    main()
