"""Draw the figures of docs/benchmarks.rst from the numbers committed in the docs.

    python docs/make_benchmark_figures.py

Nothing is measured here. Every number is read from a table that a benchmark
script printed and that is committed in the docs, so the figures cannot drift
from the tables: after re-measuring, update the table (or let the script write
its ``docs/_static/*.inc``), then run this again. Needs matplotlib.

Writes into docs/_static/:

=========================  ===============================================  ==================================
figure                     numbers from                                     measured by
=========================  ===============================================  ==================================
bench_sampling.png         benchmarks.rst, "Weighted sampling" table        python bench/compare.py
bench_kdtree.png           user_guide/neighbors.rst, "Performance" table    python bench/kdtree_compare.py
bench_compress.png         benchmarks.rst, the three compression tables     bench/compress_pipeline.py,
                                                                            bench/prune_compare.py
bench_output_layers.png    user_guide/nn.rst, the step and attention tables python bench/nn_layers.py
walks_throughput.png       _static/walks_table.inc (drawn by                python bench/walks_compare.py
                           bench/walks_compare.py's own plot function)
skipgram_throughput.png    _static/skipgram_table.inc (drawn by             python bench/skipgram_compare.py
                           bench/skipgram_compare.py's own plot function)
=========================  ===============================================  ==================================

The LSH curve (lsh_recall_qps.png) and the exact k-means sweep
(kmeans_exact.png) hold every point their scripts measured, more than their
tables, so bench/lsh_curve.py and bench/kmeans_compare.py draw them.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

DOCS = Path(__file__).resolve().parent
STATIC = DOCS / "_static"
BENCH = DOCS.parent / "bench"
OURS, PEERS = "tab:blue", ["tab:orange", "tab:green", "tab:red", "tab:purple"]

# -- reading rst tables ------------------------------------------------------------

_BORDER = re.compile(r"^\s*=+(\s+=+)+\s*$")


def simple_tables(text: str) -> list[list[list[str]]]:
    """Every ``====`` simple table of ``text``: rows of cells, the header first.

    A header spread over several lines is joined; in the body each line is a
    row, and a lone backslash is an empty cell.
    """
    lines, tables, i = text.splitlines(), [], 0
    while i < len(lines):
        if not _BORDER.match(lines[i]):
            i += 1
            continue
        spans = [m.span() for m in re.finditer(r"=+", lines[i])]
        borders = [i]
        j = i + 1
        while j < len(lines) and len(borders) < 3:
            if _BORDER.match(lines[j]):
                borders.append(j)
            elif not lines[j].strip() and len(borders) < 3:
                break
            j += 1
        if len(borders) < 3:
            i = j
            continue

        def cells(line: str) -> list[str]:
            out = []
            for n, (a, b) in enumerate(spans):
                end = spans[n + 1][0] if n + 1 < len(spans) else None
                out.append(line[a:end].strip())
            return ["" if c == "\\" else c for c in out]

        header_lines = [cells(x) for x in lines[borders[0] + 1:borders[1]]]
        header = [" ".join(filter(None, col)) for col in zip(*header_lines)]
        body = [cells(x) for x in lines[borders[1] + 1:borders[2]] if x.strip()]
        tables.append([header, *body])
        i = borders[2] + 1
    return tables


def list_tables(text: str) -> list[list[list[str]]]:
    """Every ``.. list-table::`` of ``text``: rows of cells, the header first."""
    lines, tables, i = text.splitlines(), [], 0
    while i < len(lines):
        match = re.match(r"^(\s*)\.\. list-table::", lines[i])
        i += 1
        if not match:
            continue
        indent, rows = len(match.group(1)), []
        while i < len(lines):
            line = lines[i]
            if line.strip() and len(line) - len(line.lstrip()) <= indent:
                break
            row = re.match(r"^\s*\* - (.*)$", line)
            cell = re.match(r"^\s*- (.*)$", line)
            if row:
                rows.append([row.group(1).strip()])
            elif cell and rows:
                rows[-1].append(cell.group(1).strip())
            elif line.strip() and rows and not line.strip().startswith(":"):
                rows[-1][-1] += " " + line.strip()  # a cell continued on the next line
            i += 1
        tables.append(rows)
    return tables


def table(path: Path, first_header: str, also: str = "") -> list[list[str]]:
    """The one table of ``path`` whose first header cell starts with ``first_header``
    (and whose header holds ``also``): its rows, the header first."""
    text = path.read_text(encoding="utf-8")
    found = [t for t in simple_tables(text) + list_tables(text)
             if t and t[0] and t[0][0].startswith(first_header) and also in " | ".join(t[0])]
    if len(found) != 1:
        sys.exit(f"{path}: expected one table headed {first_header!r} ... {also!r}, "
                 f"found {len(found)}")
    return found[0]


def number(cell: str) -> float | None:
    """The first number of a cell ('5.3x', '1,595', '0.67M, 4.65x'), or None."""
    match = re.search(r"-?\d[\d,]*\.?\d*", cell)
    return float(match.group().replace(",", "")) if match else None


def ratios(cell: str) -> list[float]:
    """Every 'N.Nx' ratio of a cell, in order."""
    return [float(x) for x in re.findall(r"(\d[\d,]*\.?\d*)x", cell.replace(",", ""))]


def strip_markup(cell: str) -> str:
    return re.sub(r"10\\ :sup:`(\d+)`", r"1e\1", cell.replace("``", ""))


def save(fig, name: str) -> None:
    fig.tight_layout()
    fig.savefig(STATIC / name, dpi=110)
    plt.close(fig)
    print(f"wrote docs/_static/{name}")


def ratio_bars(ax, y, values, height, notes=None, **kwargs) -> None:
    """Horizontal bars of speed-ups on a log axis, drawn from 1 (as fast) out to the value,
    so that slower cases point left; each labelled with its value (and its note)."""
    for n, (yy, v) in enumerate(zip(y, values)):
        if not v:
            continue
        ax.barh(yy, v - 1, height, left=1, **kwargs)
        kwargs.pop("label", None)
        note = f" {notes[n]}" if notes else ""
        ax.annotate(f"{v:g}x{note}", (v, yy), xytext=(3 if v >= 1 else -3, 0), textcoords="offset points",
                    va="center", ha="left" if v >= 1 else "right", fontsize=7)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.axvline(1, color="grey", lw=0.8)


def finish_ratio_plot(fig, ax, y, labels, *, xlim, legend: str, title: str, name: str) -> None:
    """Axis labels, title and legend of a plot of ratio_bars, then save it."""
    ax.set_xlim(*xlim)
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xlabel("peer time / dlkernels time (log scale): right of 1x dlkernels is faster")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc=legend)
    save(fig, name)


def label_bars(ax, bars, fmt: str = "{:g}x") -> None:
    for bar in bars:
        width = bar.get_width()
        if width > 0:
            ax.annotate(fmt.format(width), (width, bar.get_y() + bar.get_height() / 2),
                        xytext=(3, 0), textcoords="offset points", va="center", fontsize=7)


# -- the figures ---------------------------------------------------------------------

def sampling() -> None:
    rows = table(DOCS / "benchmarks.rst", "case", also="2 threads")[1:]
    labels = [f"{strip_markup(case).split(' (')[0]}\nvs {strip_markup(peer)}"
              for case, peer, *_ in rows]
    one = [number(r[2]) for r in rows]
    two = [number(r[3]) if ratios(r[3]) else 0.0 for r in rows]
    y = np.arange(len(rows))[::-1]
    fig, ax = plt.subplots(figsize=(7.5, 0.5 * len(rows) + 1.2))
    ratio_bars(ax, y + 0.2, one, 0.4, color=OURS, label="1 thread")
    ratio_bars(ax, y - 0.2, two, 0.4, color="tab:cyan", label="2 threads")
    finish_ratio_plot(fig, ax, y, labels, xlim=(0.1, 200), legend="lower right",
                      title="Weighted sampling against its peers, same run",
                      name="bench_sampling.png")


def kdtree() -> None:
    rows = table(DOCS / "user_guide" / "neighbors.rst", "case: 1e6 points")[1:]
    labels = [re.sub(r"^\(\w+\) ", "", strip_markup(r[0])).replace(", ", ",\n", 1) for r in rows]
    y = np.arange(len(rows))[::-1]
    fig, ax = plt.subplots(figsize=(7.5, 0.75 * len(rows) + 1.2))
    for k, (peer, color, dy) in enumerate((("pykdtree", PEERS[0], 0.2),
                                           ("SciPy cKDTree", PEERS[1], -0.2))):
        both = [ratios(r[1 + k]) or [0.0, 0.0] for r in rows]
        ratio_bars(ax, y + dy, [b[0] for b in both], 0.4, color=color,
                   notes=[f"(query alone {b[1]:g}x)" for b in both],
                   label=f"vs {peer}: build + query")
    for r, yy in zip(rows, y):
        if not ratios(r[1]):
            ax.annotate("pykdtree has no radius search", (1.05, yy + 0.2), va="center", fontsize=7,
                        color="grey")
    finish_ratio_plot(fig, ax, y, labels, xlim=(0.8, 40), legend="upper right",
                      title="Exact KD-tree, 1e6 points, 1e5 queries, 2 threads each, same run",
                      name="bench_kdtree.png")


def compress() -> None:
    bench = DOCS / "benchmarks.rst"
    sizes = table(bench, "target, seed")[1:]
    units = table(bench, "model, batch 256")[1:]
    tp = table(bench, "network")[1:]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), gridspec_kw={"width_ratios": [1, 0.8, 1.1]})

    ax = axes[0]
    x = np.arange(len(sizes))
    for k, (col, name, color) in enumerate(((3, "format 1", PEERS[0]),
                                            (4, "format 2, Huffman only", PEERS[1]),
                                            (5, "format 2", OURS))):
        ax.bar(x + (k - 1) * 0.27, [number(r[col]) for r in sizes], 0.27, color=color, label=name)
    ax.set_xticks(x, [r[0].replace(" bits, ", " bits\nseed ").replace("x, ", "x\n") for r in sizes],
                  fontsize=7)
    ax.set_ylim(0, 1.3 * max(number(r[3]) for r in sizes))
    ax.set_ylabel("file bytes (float32 model: 202,440)")
    ax.set_title("Digits MLP by compress_to_size: file bytes", fontsize=9)
    ax.legend(fontsize=7, loc="upper right", ncol=3)

    ax = axes[1]
    x = np.arange(len(units))
    def two_lines(shape: str) -> str:  # 1024-4096-4096-10 -> 1024-4096- / 4096-10
        parts = shape.split("-")
        half = (len(parts) + 1) // 2
        return "-".join(parts[:half]) + "-\n" + "-".join(parts[half:])

    names = [two_lines(r[0]) + f"\n{r[1]} thread{'s' if r[1] != '1' else ''}" for r in units]
    ax.bar(x - 0.2, [number(r[2]) for r in units], 0.4, color=OURS, label="unpruned / prune_units")
    ax.bar(x + 0.2, [number(r[3]) for r in units], 0.4, color=PEERS[0],
           label="torch masking / prune_units")
    ax.axhline(1, color="grey", lw=0.8)
    ax.set_xticks(x, names, fontsize=6)
    ax.set_ylim(0, 1.35 * max(number(r[3]) for r in units))
    ax.set_ylabel("speed-up of batch-256 inference")
    ax.set_title("MLPs after prune_units(mlp, 0.5)", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")

    ax = axes[2]
    y = np.arange(len(tp))[::-1]
    ours = [ratios(r[2])[0] for r in tp]
    theirs = [ratios(r[3])[0] for r in tp]
    label_bars(ax, ax.barh(y + 0.2, ours, 0.4, color=OURS, label="dlkernels prune_units"))
    label_bars(ax, ax.barh(y - 0.2, theirs, 0.4, color=PEERS[0], label="Torch-Pruning 1.6.1"))
    short = [r[0].replace("Linear + TransformerEncoderLayer + head", "Transformer tagger")
             .replace("conv-bn-relu x3 + linear", "conv-bn-relu x3") + f"\n(prune call {r[5]} faster)"
             for r in tp]
    ax.set_yticks(y, short, fontsize=7)
    ax.set_xlim(0, 1.25 * max(ours + theirs))
    ax.set_xlabel("inference speed-up, 50% of units removed")
    ax.set_title("Structural pruning against Torch-Pruning", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    save(fig, "bench_compress.png")


def output_layers() -> None:
    guide = DOCS / "user_guide" / "nn.rst"
    header, *rows = table(guide, "layer", also="ms/step")
    attention = table(guide, "seq")[1:]
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw={"width_ratios": [1.2, 1]})

    ax = axes[0]
    y = np.arange(len(rows))[::-1]
    names = [strip_markup(r[0]).replace("nn.Linear + cross_entropy", "nn.Linear + cross-entropy")
             for r in rows]
    ms = [number(r[1]) for r in rows]
    colors = [PEERS[0] if "nn.Linear" in n else OURS for n in names]
    ax.barh(y, ms, 0.6, color=colors)
    peak = header.index("peak MB")
    for yy, v, r in zip(y, ms, rows):
        ax.annotate(f"{v:,g} ms, peak {r[peak]} MB", (v, yy), xytext=(3, 0),
                    textcoords="offset points", va="center", fontsize=7)
    ax.set_xscale("log")
    ax.set_xlim(0.3, max(ms) * 30)
    ax.set_yticks(y, names, fontsize=7)
    ax.set_xlabel("ms per training step (log scale), V = 100,000, d = 300, batch 512")
    ax.set_title("Output layers: one training step, 1 torch thread", fontsize=9)

    ax = axes[1]
    impls = list(dict.fromkeys(strip_markup(r[1]) for r in attention))
    seqs = list(dict.fromkeys(r[0] for r in attention))
    x = np.arange(len(seqs))
    width = 0.8 / len(impls)
    for k, impl in enumerate(impls):
        values = [next(number(r[3]) for r in attention if r[0] == s and strip_markup(r[1]) == impl)
                  for s in seqs]
        color = OURS if impl.startswith("dlkernels") else PEERS[(k - 1) % len(PEERS)]
        ax.bar(x + (k - (len(impls) - 1) / 2) * width, values, width, color=color, label=impl)
    ax.set_yscale("log")
    ax.set_xticks(x, [f"sequence {s}" for s in seqs])
    ax.set_ylabel("forward + backward ms (log scale)")
    ax.set_title("LSH attention: one head, dim 64, 4 rounds", fontsize=9)
    ax.legend(fontsize=7)
    save(fig, "bench_output_layers.png")


def _bench_module(name: str):
    """A script of bench/ as a module, for its plot function."""
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(BENCH))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    return module


def walks() -> None:
    rows = simple_tables((STATIC / "walks_table.inc").read_text(encoding="utf-8"))[0][1:]
    results = {("pecanpy" if r[0].startswith("PecanPy") else "dlkernels", int(r[1])):
               {"steps_per_s": number(r[2]) * 1e6} for r in rows}
    # The graph of the committed run (see user_guide/graph.rst).
    args = SimpleNamespace(nodes=100_000, edges=1_000_000, p=0.5, q=2.0,
                           plot=str(STATIC / "walks_throughput.png"))
    _bench_module("walks_compare").plot(results, args)


def skipgram() -> None:
    text = (STATIC / "skipgram_table.inc").read_text(encoding="utf-8")
    rows = simple_tables(text)[0][1:]
    results = [(int(r[0]), int(r[1]), {"dlkernels": number(r[2]), "gensim": number(r[3])}, None)
               for r in rows]
    dim, negative = (int(x) for x in re.search(r"dim (\d+), (\d+) negatives", text).groups())
    args = SimpleNamespace(window=sorted({w for w, *_ in results}),
                           threads=sorted({t for _, t, *_ in results}), dim=dim, negative=negative)
    _bench_module("skipgram_compare").plot(str(STATIC / "skipgram_throughput.png"), results, args)
    print("wrote docs/_static/skipgram_throughput.png")


def main() -> None:
    for draw in (sampling, kdtree, compress, output_layers, walks, skipgram):
        draw()


if __name__ == "__main__":
    main()
