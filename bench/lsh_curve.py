"""Recall@10 against queries per second: dlkernels's LSHIndex beside faiss, one run.

    python bench/lsh_curve.py                 # the full sweep, a few minutes
    python bench/lsh_curve.py --quick         # fewer points
    python bench/lsh_curve.py --plot docs/_static/lsh_recall_qps.png \
                              --table docs/_static/lsh_table.inc

Data: ``benchmarks/_lsh_data.clustered`` (2e5 points, 2000 queries, 128-D
Gaussian clusters). Every searcher runs with ``--threads`` threads (default 2)
and is timed by its best of ``--repeat`` calls on all 2000 queries. Exact
search (faiss ``IndexFlatL2``, and numpy with BLAS) is timed at the start and at
the end of the run and its better time is the reference: speed-ups are
reference time / searcher time, measured in the same process.

Peers: faiss ``IndexLSH`` (sign bits of a random rotation, a linear scan of all
codes by Hamming distance, no re-ranking: its recall is that of Hamming
ranking) swept over ``nbits``; and ``IndexRefineFlat`` over it, which re-ranks
the ``k_factor * 10`` best by Hamming distance with exact L2.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchmarks import _lsh_data as D  # noqa: E402

TARGET_RECALL, TARGET_SPEEDUP = 0.9, 10.0

DLKERNELS_SWEEP = [  # (n_tables, n_bits, bucket_width, [n_probes...])
    (16, 12, 20.0, [2, 4, 8, 12, 16, 20, 24, 32, 48]),
    (8, 14, 25.0, [8, 16, 32, 48, 64, 96]),
    (12, 16, 30.0, [4, 8, 12, 16, 24, 32]),
    (24, 12, 20.0, [4, 8, 12, 16, 24]),
    (20, 12, 20.0, [8, 12, 16, 20]),
    (16, 11, 18.0, [8, 12, 16, 20]),
]
QUICK_SWEEP = [(16, 12, 20.0, [4, 12, 20, 32])]
FAISS_NBITS = [128, 256, 512, 1024]
REFINE = [(128, 20), (256, 10), (256, 20), (256, 40), (512, 10), (512, 40), (1024, 20)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a few points of each curve")
    parser.add_argument("--plot", metavar="PNG", help="write the recall-QPS plot here")
    parser.add_argument("--table", metavar="RST", help="write the summary table (reST) here")
    parser.add_argument("--spread", type=float, default=D.SPREAD,
                        help="within-cluster spread of the data (default %(default)s)")
    args = parser.parse_args()

    import dlkernels

    nt, rep = args.threads, args.repeat
    print(f"dlkernels {dlkernels.__version__}, numpy {np.__version__}, python "
          f"{platform.python_version()}, {os.cpu_count()} CPUs, n_threads={nt}")
    X, Q = D.data(args.spread)
    truth = D.ground_truth(args.spread)
    m = Q.shape[0]
    print(f"data: {X.shape[0]} points, {m} queries, {X.shape[1]}-D, {D.N_CLUSTERS} Gaussian "
          f"clusters, spread {args.spread}")
    rows = []  # (method, params, recall, seconds, build seconds)

    def run(method, params, build):
        start = time.perf_counter()
        try:
            search = build()
        except NotImplementedError as skipped:
            print(f"  {method}: skipped ({skipped})")
            return None
        built = time.perf_counter() - start
        found = search(Q)
        seconds = D.best_seconds(lambda: search(Q), rep)
        row = (method, params, D.recall(found, truth), seconds, built)
        rows.append(row)
        print(f"  {method:18} {params:34} recall {row[2]:.3f}  {m / seconds:9.0f} q/s  "
              f"(build {built:.1f} s)", flush=True)
        return row

    print("exact search (start of run):")
    exact = [run("faiss IndexFlatL2", "", lambda: D.faiss_flat(X, nt)),
             run("numpy BLAS", "", lambda: D.numpy_brute(X, nt))]
    print("dlkernels LSHIndex (metric='l2'):")
    for L, K, w, probes in (QUICK_SWEEP if args.quick else DLKERNELS_SWEEP):
        from dlkernels.neighbors import LSHIndex

        start = time.perf_counter()
        index = LSHIndex(X.shape[1], metric="l2", n_tables=L, n_bits=K, bucket_width=w, rng=0)
        index.add(X, n_threads=nt)
        built = time.perf_counter() - start
        for P in probes:
            search = (lambda P: lambda q: index.query(q, k=D.K, n_probes=P, n_threads=nt)[1])(P)
            found = search(Q)
            seconds = D.best_seconds(lambda: search(Q), rep)
            row = ("dlkernels LSHIndex", f"L={L} K={K} w={w:g} n_probes={P}",
                   D.recall(found, truth), seconds, built)
            rows.append(row)
            print(f"  {row[0]:18} {row[1]:34} recall {row[2]:.3f}  {m / seconds:9.0f} q/s  "
                  f"(build {built:.1f} s)", flush=True)
        del index
    print("faiss IndexLSH (Hamming ranking, no re-ranking):")
    for nbits in (FAISS_NBITS[1::2] if args.quick else FAISS_NBITS):
        run("faiss IndexLSH", f"nbits={nbits}", lambda: D.faiss_lsh(X, nt, nbits))
    print("faiss IndexRefineFlat(IndexLSH) (Hamming ranking, exact re-ranking):")
    for nbits, kf in (REFINE[1::2] if args.quick else REFINE):
        run("faiss LSH+refine", f"nbits={nbits} k_factor={kf}",
            lambda: D.faiss_lsh(X, nt, nbits, kf))
    print("exact search (end of run):")
    exact += [run("faiss IndexFlatL2", "", lambda: D.faiss_flat(X, nt)),
              run("numpy BLAS", "", lambda: D.numpy_brute(X, nt))]

    exact = [row for row in exact if row is not None]
    reference = min(exact, key=lambda row: row[3])
    print()
    print(f"reference: {reference[0]}, {m / reference[3]:.0f} q/s (the faster exact search "
          f"of the run)")
    print(f"{'method':18} {'parameters':34} {'recall@10':>9} {'q/s':>9} {'speed-up':>9}")
    for method, params, rec, seconds, _ in rows:
        print(f"{method:18} {params:34} {rec:9.3f} {m / seconds:9.0f} "
              f"{reference[3] / seconds:8.1f}x")
    best = {}
    for method, params, rec, seconds, _ in rows:
        if rec >= TARGET_RECALL and (method not in best or seconds < best[method][3]):
            best[method] = (method, params, rec, seconds)
    print()
    print(f"Fastest at recall@10 >= {TARGET_RECALL} (target: >= {TARGET_SPEEDUP:g}x exact search):")
    for method, params, rec, seconds in best.values():
        ok = "ok" if reference[3] / seconds >= TARGET_SPEEDUP else "MISS"
        print(f"  {method:18} {params:34} recall {rec:.3f}  {reference[3] / seconds:6.1f}x  "
              f"{ok if method == 'dlkernels LSHIndex' else ''}")
    if args.plot:
        plot(rows, reference, m, args.plot, args.spread)
    if args.table:
        write_table(rows, reference, m, args.table, nt)


def write_table(rows, reference, m, path, n_threads) -> None:
    """The best configuration of each method at recall >= 0.8, 0.9, 0.95, and exact search."""
    lines = []
    for method, params, rec, seconds, built in rows:
        if method in ("faiss IndexFlatL2", "numpy BLAS") and seconds != reference[3]:
            continue
        lines.append((method, params, rec, m / seconds, reference[3] / seconds, built))
    chosen = [line for line in lines if line[0] in ("faiss IndexFlatL2", "numpy BLAS")]
    for method in ("dlkernels LSHIndex", "faiss LSH+refine", "faiss IndexLSH"):
        for floor in (0.8, 0.9, 0.95):
            ok = [line for line in lines if line[0] == method and line[2] >= floor]
            if ok:
                best = max(ok, key=lambda line: line[3])
                if best not in chosen:
                    chosen.append(best)
        if not any(line[0] == method for line in chosen):
            ok = [line for line in lines if line[0] == method]
            if ok:
                chosen.append(max(ok, key=lambda line: line[2]))
    header = ("method", "parameters", "recall@10", "queries/s", "vs exact", "build (s)")
    cells = [header] + [(meth, par or "-", f"{rec:.3f}", f"{qps:.0f}", f"{ratio:.1f}x",
                         f"{built:.1f}") for meth, par, rec, qps, ratio, built in chosen]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    rule = "  ".join("=" * w for w in widths)
    out = [f".. Written by bench/lsh_curve.py ({n_threads} threads, {m} queries).", "", rule,
           "  ".join(h.ljust(w) for h, w in zip(header, widths)), rule]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells[1:]]
    out += [rule, ""]
    with open(path, "w") as f:
        f.write("\n".join(out))
    print(f"wrote {path}")


def plot(rows, reference, m, path, spread) -> None:
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {"dlkernels LSHIndex": "o-", "faiss IndexLSH": "s--", "faiss LSH+refine": "^--"}
    for colour, (method, style) in enumerate(styles.items()):
        pts = sorted((rec, m / sec) for meth, _, rec, sec, _ in rows if meth == method)
        # The upper envelope over all configurations: the best q/s at each recall,
        # with the configurations below it as faint dots.
        envelope, best_qps = [], 0.0
        for rec, qps in sorted(pts, reverse=True):
            if qps > best_qps:
                envelope.append((rec, qps))
                best_qps = qps
        ax.plot([r for r, _ in pts], [q for _, q in pts], ".", color=f"C{colour}", alpha=0.3)
        pts = sorted(envelope)
        if pts:
            ax.plot([r for r, _ in pts], [q for _, q in pts], style, color=f"C{colour}",
                    label=method)
    for meth, _, rec, sec, _ in rows:
        if meth in ("faiss IndexFlatL2", "numpy BLAS") and sec == reference[3]:
            ax.axhline(m / sec, color="gray", lw=1)
            ax.text(0.01, m / sec * 1.08, f"exact ({meth})", color="gray", fontsize=8)
            ax.axhline(TARGET_SPEEDUP * m / sec, color="gray", lw=1, ls=":")
            ax.text(0.01, TARGET_SPEEDUP * m / sec * 1.08, "10x exact", color="gray", fontsize=8)
    ax.axvline(TARGET_RECALL, color="gray", lw=1, ls=":")
    ax.set_yscale("log")
    ax.set_xlim(0, 1.01)
    ax.set_xlabel("recall@10")
    ax.set_ylabel("queries per second")
    ax.set_title(f"2e5 x 128-D Gaussian clusters (spread {spread}), 2000 queries, 2 threads",
                 fontsize=9)
    ax.legend(fontsize=8, loc="center left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
