"""Same-run comparison of dlkernels.embed.SkipGram and gensim's Word2Vec (sg=1).

Both train on the same random walks of a 5-block stochastic block model graph
(numpy walker, dlkernels/embed/_synthetic.py), at the same dim, window, negatives, sample,
epochs and threads. Printed: training words per second (corpus words x epochs /
training seconds; gensim's vocabulary scan is left out of its time), the
accuracy of a logistic regression predicting each node's block from its vector
(5-fold cross-validation), and the ratio dlkernels / gensim of the words per second.

    python bench/skipgram_compare.py [--dim 128] [--window 5 10] [--threads 1 2] [--repeat 3]
        [--plot docs/_static/skipgram_throughput.png] [--table docs/_static/skipgram_table.inc]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from dlkernels.embed._synthetic import sbm_adjacency, uniform_walks


def block_accuracy(vectors: np.ndarray, blocks: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    return float(cross_val_score(LogisticRegression(max_iter=2000), vectors, blocks, cv=5).mean())


def train_dlkernels(walks, args, n_threads, seed):
    from dlkernels.embed import SkipGram

    model = SkipGram(dim=args.dim, window=args.current_window, n_negatives=args.negative, hs=args.hs,
                     sample=args.sample, epochs=args.epochs, rng=seed, n_threads=n_threads)
    start = time.perf_counter()
    model.fit(walks)
    return time.perf_counter() - start, model.vectors


def train_gensim(walks, args, n_threads, seed):
    from gensim.models import Word2Vec

    sentences = [[str(x) for x in row[row >= 0]] for row in walks]
    model = Word2Vec(vector_size=args.dim, window=args.current_window, negative=0 if args.hs else args.negative,
                     hs=int(args.hs), sg=1, sample=args.sample, epochs=args.epochs,
                     workers=n_threads, min_count=1, seed=seed)
    model.build_vocab(sentences)
    start = time.perf_counter()
    model.train(sentences, total_examples=len(sentences), epochs=args.epochs)
    seconds = time.perf_counter() - start
    return seconds, np.array([model.wv[str(i)] for i in range(walks.max() + 1)])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--in-degree", type=float, default=10.0,
                        help="expected neighbours of a node inside its block")
    parser.add_argument("--out-degree", type=float, default=2.0,
                        help="expected neighbours outside its block (larger: harder to classify)")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--window", type=int, nargs="+", default=[5])
    parser.add_argument("--negative", type=int, default=5)
    parser.add_argument("--hs", action="store_true", help="hierarchical softmax (negative=0 for both)")
    parser.add_argument("--sample", type=float, default=1e-3)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--walk-length", type=int, default=80)
    parser.add_argument("--walks-per-node", type=int, default=10)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--plot", help="write a words/s vs threads plot (PNG) here")
    parser.add_argument("--table", help="write the results as an rst table here")
    args = parser.parse_args(argv)
    if args.hs:
        args.negative = 0
    block = args.nodes // 5
    neighbours, blocks = sbm_adjacency(args.nodes, 5, p_in=args.in_degree / block,
                                       p_out=args.out_degree / (args.nodes - block))
    walks = uniform_walks(neighbours, args.walk_length, args.walks_per_node)
    words = int((walks >= 0).sum()) * args.epochs
    print(f"SBM graph: {args.nodes} nodes, 5 blocks, expected degree {args.in_degree:g} inside "
          f"+ {args.out_degree:g} across; {walks.shape[0]} walks, {words} training "
          f"words; dim={args.dim} negative={args.negative} hs={args.hs} "
          f"sample={args.sample} epochs={args.epochs}")
    print(f"{'window':>6} {'threads':>7} {'dlkernels w/s':>12} {'gensim w/s':>12} {'ratio':>6} "
          f"{'acc dlkernels':>10} {'acc gensim':>10}")
    results = []
    for window in args.window:
        args.current_window = window
        for n_threads in args.threads:
            times = {"dlkernels": [], "gensim": []}
            vectors = {}
            for rep in range(args.repeat):
                # Interleaved, so both see the same background load.
                for name, fn in (("dlkernels", train_dlkernels), ("gensim", train_gensim)):
                    seconds, vectors[name] = fn(walks, args, n_threads, rep)
                    times[name].append(seconds)
            rate = {name: words / min(t) for name, t in times.items()}
            acc = {name: block_accuracy(v, blocks) for name, v in vectors.items()}
            results.append((window, n_threads, rate, acc))
            print(f"{window:>6} {n_threads:>7} {rate['dlkernels']:>12.3g} {rate['gensim']:>12.3g} "
                  f"{rate['dlkernels'] / rate['gensim']:>6.2f} {acc['dlkernels']:>10.3f} "
                  f"{acc['gensim']:>10.3f}", flush=True)
    if args.table:
        write_table(args.table, results, args)
    if args.plot:
        plot(args.plot, results, args)


def write_table(path, results, args) -> None:
    rows = [(str(w), str(t), f"{r['dlkernels']:,.0f}", f"{r['gensim']:,.0f}",
             f"{r['dlkernels'] / r['gensim']:.2f}", f"{a['dlkernels']:.3f}", f"{a['gensim']:.3f}")
            for w, t, r, a in results]
    head = ("window", "threads", "dlkernels words/s", "gensim words/s", "ratio", "acc. dlkernels",
            "acc. gensim")
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    rule = "  ".join("=" * w for w in widths)
    lines = [f".. Written by bench/skipgram_compare.py (dim {args.dim}, {args.negative} negatives, "
             f"best of {args.repeat}).", "", rule, "  ".join(h.ljust(w) for h, w in zip(head, widths)),
             rule]
    lines += ["  ".join(x.ljust(w) for x, w in zip(row, widths)) for row in rows]
    lines += [rule, ""]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def plot(path, results, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for window in args.window:
        for name, style in (("dlkernels", "-o"), ("gensim", "--s")):
            pts = [(t, r[name]) for w, t, r, _ in results if w == window]
            ax.plot([p[0] for p in pts], [p[1] / 1e3 for p in pts], style,
                    label=f"{name}, window {window}")
    ax.set_xlabel("threads")
    ax.set_xticks(args.threads)
    ax.set_ylabel("training words / s (thousands)")
    ax.set_title(f"skip-gram, dim {args.dim}, {args.negative} negatives, SBM walks")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)

if __name__ == "__main__":
    main()
