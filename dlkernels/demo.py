"""`dlkernels demo`: each capability on embedded data, with what it did and how fast."""

from __future__ import annotations

import os
import re
import time
import types
from collections import Counter
from collections.abc import Sequence
from importlib import resources
from typing import Any

import numpy as np


def _timed(fn, repeat: int = 3) -> tuple[object, float]:
    """Result of ``fn()`` and its best wall time over ``repeat`` runs, in seconds."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return result, best


def _skipped(part: str, package: str, extra: str) -> None:
    """The one line of a demo part whose optional dependency is missing."""
    print(f'{part}: skipped, {package} is not installed (pip install "dlkernels[{extra}]")')


def corpus_words() -> list[str]:
    """The words of the small text shipped with dlkernels (lower case)."""
    text = resources.files("dlkernels").joinpath("data/corpus.txt").read_text(encoding="utf-8")
    return re.findall(r"[a-z]+", text.lower())


def demo_negative_sampling(rng: np.random.Generator) -> None:
    from dlkernels.sampling import NegativeSampler

    words = corpus_words()
    vocab, counts = zip(*Counter(words).most_common())
    sampler = NegativeSampler(np.array(counts), power=0.75)
    ids = {w: i for i, w in enumerate(vocab)}
    print(f"negative sampling: {len(words)} words of embedded text, vocabulary {len(vocab)}")
    for w in ("the", "tree", "replay"):
        i = ids[w]
        print(f"  {w!r:>9}: unigram {counts[i] / len(words):.4f} -> noise "
              f"{float(np.exp(sampler.log_prob(i))):.4f}")
    centre = np.array([ids[w] for w in words[:-1]])
    context = np.array([ids[w] for w in words[1:]])
    pairs = np.stack([centre, context], axis=1)
    (inputs, cands, labels), secs = _timed(lambda: sampler.pairs(pairs, 5, rng=rng))
    clash = np.any(cands.reshape(-1, 6)[:, 1:] == context[:, None])
    print(f"  {len(pairs)} (word, next word) pairs -> {len(labels)} labelled examples, "
          f"5 negatives each, none equal to its target: {not clash} ({secs * 1e3:.2f} ms)")


def demo_prioritized_replay(rng: np.random.Generator) -> None:
    from dlkernels.sampling import PrioritizedSampler

    capacity = 2**20
    per = PrioritizedSampler(capacity, alpha=0.6, beta=0.4)
    priorities = rng.pareto(1.5, capacity) + 1e-3
    _, build = _timed(lambda: per.update(np.arange(capacity), priorities), repeat=1)
    (idx, w), secs = _timed(lambda: per.sample(1024, rng=rng))
    new = rng.pareto(1.5, 1024) + 1e-3
    _, upd = _timed(lambda: per.update(idx, new))
    print(f"prioritized replay: {capacity} priorities set in {build * 1e3:.1f} ms; "
          f"a batch of 1024 with importance weights in {secs * 1e6:.0f} us, "
          f"1024 priority updates in {upd * 1e6:.0f} us")
    top = np.argsort(priorities)[-1024:]
    print(f"  the top 0.1% of priorities fill {np.isin(idx, top).mean():.0%} of the batch; "
          f"weights span [{w.min():.3f}, {w.max():.3f}]")


def demo_alias(rng: np.random.Generator) -> None:
    from dlkernels.sampling import AliasSampler

    n, size = 1_000_000, 10_000_000
    weights = rng.pareto(1.0, n)
    sampler, build = _timed(lambda: AliasSampler(weights), repeat=1)
    draws, secs = _timed(lambda: sampler.sample(size, rng=rng))
    p = sampler.probabilities
    _, secs_np = _timed(lambda: rng.choice(n, size, p=p), repeat=1)
    top = int(np.argmax(weights))
    print(f"alias method: table for {n} categories in {build * 1e3:.0f} ms; {size} draws in "
          f"{secs * 1e3:.0f} ms (numpy Generator.choice: {secs_np * 1e3:.0f} ms, "
          f"{secs_np / secs:.0f}x slower)")
    print(f"  heaviest category: expected share {p[top]:.4f}, drawn {np.mean(draws == top):.4f}")


def demo_torch_layer(rng: np.random.Generator) -> None:
    try:
        import torch
    except ImportError:
        _skipped("torch layer", "torch", "torch")
        return
    import torch.nn.functional as F

    from dlkernels.decoding import beam_search
    from dlkernels.nn import HierarchicalSoftmax

    torch.manual_seed(int(rng.integers(2**31)))
    V, d, batch = 20_000, 128, 256
    counts = 1.0 / np.arange(1, V + 1)
    hs = HierarchicalSoftmax(d, V, counts=counts)
    linear = torch.nn.Linear(d, V)
    x = torch.randn(batch, d)
    y = torch.as_tensor(rng.choice(V, batch, p=counts / counts.sum()))

    def step(loss_fn, module):
        def run():
            module.zero_grad(set_to_none=True)
            loss_fn().backward()
        return run

    _, t_hs = _timed(step(lambda: hs(x, y), hs))
    _, t_lin = _timed(step(lambda: F.cross_entropy(linear(x), y), linear))
    print(f"torch layer: hierarchical softmax over a {V}-word Zipf vocabulary (Huffman tree, "
          f"depth {hs.tree.max_length}): training step {t_hs * 1e3:.1f} ms vs "
          f"{t_lin * 1e3:.1f} ms for nn.Linear + cross_entropy ({t_lin / t_hs:.0f}x)")
    with torch.no_grad():
        top, secs = _timed(lambda: hs.predict(x, k=5, return_log_prob=True), repeat=1)
        exact = bool(torch.allclose(top[1], hs.log_prob(x).topk(5, dim=1).values))
    print(f"  exact top-5 of {batch} examples by best-first search in {secs * 1e3:.1f} ms, "
          f"equal to topk of the full distribution: {exact}")

    # Beam search over a tiny recurrent model.
    Vb, hidden = 1000, 64
    E, A = torch.randn(Vb + 1, hidden) * 0.5, torch.randn(hidden, hidden) / hidden ** 0.5
    W = torch.randn(hidden, Vb) / hidden ** 0.5

    def step_fn(tokens, h):
        h = torch.tanh(h @ A + E[tokens[:, -1]])
        return torch.log_softmax(h @ W, dim=1), h

    out, secs = _timed(lambda: beam_search(step_fn, torch.randn(8, hidden), 8, 4, 12,
                                           bos_id=Vb, eos_id=0, num_return=2), repeat=1)
    print(f"  beam search: 8 items x 4 beams, V={Vb}, up to 12 steps in {secs * 1e3:.0f} ms; "
          f"best score of item 0 {float(out.scores[0, 0]):.3f}")
    _demo_distillation(torch, rng)


def _demo_distillation(torch, rng: np.random.Generator) -> None:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        _skipped("  distillation", "scikit-learn", "demo")
        return
    from dlkernels.distill import Distiller

    X, y = load_digits(return_X_y=True)
    X = torch.as_tensor(X / 16.0, dtype=torch.float32)
    y = torch.as_tensor(y)
    perm = torch.as_tensor(rng.permutation(len(y)))
    train, test = perm[:1000], perm[1000:]
    start = time.perf_counter()
    # One seed of the test of the claim (tests/distill/test_digits.py, 3 seeds):
    # shorter training does not let the 4-unit student profit from soft targets.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: a second thread only adds synchronisation
    try:
        teacher, student_alone, student_kd = _digits_models(
            torch, X[train], y[train], int(rng.integers(2**31)), Distiller)
    finally:
        torch.set_num_threads(threads)
    secs = time.perf_counter() - start
    with torch.no_grad():
        acc = [float((m(X[test]).argmax(1) == y[test]).float().mean())
               for m in (teacher, student_alone, student_kd)]
    print(f"  distillation on the digits (600 full-batch steps, T=2): teacher (64-256-10) "
          f"{acc[0]:.3f}, student (64-4-10) alone {acc[1]:.3f}, distilled {acc[2]:.3f} test "
          f"accuracy ({secs:.1f} s)")


def _digits_models(torch, X, y, seed: int, Distiller, temperature: float = 2.0,
                   alpha: float = 0.9, steps: int = 600, teacher_steps: int = 300):
    """A teacher, a student trained alone and the same student distilled (full-batch Adam).

    The student (one hidden layer of 4 units) is too small to reach the
    teacher's accuracy; the teacher's soft targets at ``temperature`` help it.
    Shared by ``dlkernels demo`` and the test of the claim (tests/distill).
    """
    from torch import nn

    torch.manual_seed(seed)
    teacher = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Dropout(0.2), nn.Linear(256, 10))
    opt = torch.optim.Adam(teacher.parameters(), 3e-3)
    for _ in range(teacher_steps):
        opt.zero_grad()
        nn.functional.cross_entropy(teacher(X), y).backward()
        opt.step()
    teacher.eval()
    students = []
    for weight in (0.0, alpha):
        torch.manual_seed(seed + 1)
        student = nn.Sequential(nn.Linear(64, 4), nn.Tanh(), nn.Linear(4, 10))
        Distiller(teacher, student, torch.optim.Adam(student.parameters(), 1e-2),
                  schedule=temperature, alpha=weight).fit([(X, y)], epochs=steps)
        students.append(student.eval())
    return teacher, *students
def demo_lsh(rng: np.random.Generator) -> None:
    from dlkernels.neighbors import LSHIndex

    # 20000 points, 300 sample queries to tune on and 500 fresh queries in 64-D,
    # from 300 Gaussian clusters.
    n, m_tune, m, dim = 20_000, 300, 500, 64
    centres = rng.standard_normal((300, dim))
    labels = rng.integers(0, 300, n + m_tune + m)
    points = (centres[labels] + 0.5 * rng.standard_normal((n + m_tune + m, dim))
              ).astype(np.float32)
    X, sample, Q = points[:n], points[n:n + m_tune], points[n + m_tune:]
    index = LSHIndex(dim, metric="l2", rng=rng)
    _, build = _timed(lambda: index.add(X), repeat=1)
    chosen, secs_tune = _timed(lambda: index.tune(sample, k=10, target_recall=0.95), repeat=1)
    (_, found), secs = _timed(lambda: index.query(Q, k=10), repeat=2)
    sq = np.einsum("ij,ij->i", X, X)

    def exact():
        d2 = sq[None, :] - 2.0 * (Q @ X.T)
        return np.argpartition(d2, 10, axis=1)[:, :10]

    truth, secs_exact = _timed(exact, repeat=2)
    recall = np.mean([len(np.intersect1d(f, t)) / 10 for f, t in zip(found, truth)])
    print(f"lsh: {n} points in {dim}-D (300 Gaussian clusters) indexed in {build * 1e3:.0f} ms "
          f"(a k-means tree of {2 ** index.n_bits} leaves), tuned for recall 0.95 on "
          f"{m_tune} sample queries in {secs_tune * 1e3:.0f} ms (n_probes={chosen['n_probes']})")
    print(f"  {m} queries, k=10: recall@10 {recall:.3f} in {secs * 1e3:.1f} ms; exact search "
          f"(numpy BLAS) {secs_exact * 1e3:.1f} ms, {secs_exact / secs:.1f}x slower")
def demo_kdtree(rng: np.random.Generator) -> None:
    from dlkernels.neighbors import KDTree

    n, m, k = 200_000, 20_000, 8
    # Clustered 3-D points (a point cloud of 50 blobs) and queries from the same blobs.
    centres = rng.random((50, 3))
    both = centres[rng.integers(0, 50, n + m)] + rng.normal(scale=0.02, size=(n + m, 3))
    points, queries = both[:n], both[n:]
    tree, build = _timed(lambda: KDTree(points), repeat=1)
    (dist, idx), secs = _timed(lambda: tree.query(queries, k=k))
    (ids, offsets), secs_r = _timed(lambda: tree.query_radius(queries, 0.007))
    print(f"kd-tree: {n} points built in {build * 1e3:.0f} ms; {m} queries, k={k}, in "
          f"{secs * 1e3:.0f} ms ({m / secs / 1e6:.2f} M queries/s); radius 0.007 in "
          f"{secs_r * 1e3:.0f} ms, {len(ids) / m:.1f} neighbours per query")
    check = queries[:200]
    brute = np.sqrt(((check[:, None, :] - points[None, :, :]) ** 2).sum(-1))
    same = np.allclose(np.sort(brute, axis=1)[:, :k], dist[:200], rtol=1e-12, atol=0)
    new_ids, secs_add = _timed(lambda: tree.add(rng.random((1000, 3))), repeat=1)
    print(f"  k nearest of 200 queries match brute force: {same}; 1000 points added in "
          f"{secs_add * 1e3:.1f} ms (ids {new_ids[0]}..{new_ids[-1]}, {tree.n_trees} trees)")


def run(seed: int = 0) -> None:
    import dlkernels

    cfg = dlkernels.config()
    print(f"dlkernels {dlkernels.__version__} demo (OpenMP {cfg['openmp']}, "
          f"{cfg['default threads']} threads, seed {seed})\n")
    rng = np.random.default_rng(seed)
    for part in (demo_negative_sampling, demo_prioritized_replay, demo_alias, demo_kdtree,
                 demo_lsh, demo_torch_layer, demo_debug, demo_kmeans, demo_compress,
                 demo_walks, demo_node2vec):
        part(rng)
        print()


def demo_debug(rng: np.random.Generator) -> None:
    try:
        import torch
    except ImportError:
        _skipped("debug", "torch", "torch")
        return
    from dlkernels.debug import MemoryProfiler, check_training_step

    torch.manual_seed(int(rng.integers(2**31)))
    # The MLP of the asv benchmark (bench/benchmarks/debug.py): MNIST-sized.
    model = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(),
                                torch.nn.Linear(512, 512), torch.nn.ReLU(),
                                torch.nn.Linear(512, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(128, 784), torch.randint(0, 10, (128,))
    loss_fn = torch.nn.functional.cross_entropy

    def step():
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

    def profiled():
        with MemoryProfiler(model, opt) as prof:
            step()
        return prof

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: on a busy machine more only adds waiting
    try:
        step()  # Adam's state exists from here on, as in a running training loop
        # Alternate the two so that machine load hits both alike; the overhead is
        # the median of the paired ratios (bench/profiler_overhead.py does the same).
        plain, with_prof, ratios = float("inf"), float("inf"), []
        for _ in range(15):
            bare = _timed(step, repeat=1)[1]
            prof, secs = _timed(profiled, repeat=1)
            plain, with_prof = min(plain, bare), min(with_prof, secs)
            ratios.append(secs / bare)
    finally:
        torch.set_num_threads(threads)
    print(f"debug: MemoryProfiler on one training step of a {len(model)}-layer MLP "
          f"(batch 128, Adam, 1 thread): step {plain * 1e3:.2f} ms, profiled "
          f"{with_prof * 1e3:.2f} ms (best of 15 each); overhead "
          f"{float(np.median(ratios)) - 1:+.0%} (median of the paired ratios)")
    for line in prof.report(top=4).splitlines():
        print("  " + line)
    report = check_training_step(model, loss_fn, (x, y), opt)
    print(f"  check_training_step: {len(report.changed)} of {len(report.changes)} parameters "
          f"changed, problems: {report.problems() or 'none'} (model and optimizer restored)")


def digits_compression(torch: types.ModuleType, seed: int = 0, *, train_steps: int = 1500,
                       tune_steps: int = 500, schedule: Sequence[float] = (0.5, 0.75, 0.9),
                       bits: int = 4, bias_bits: int = 4,
                       path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Deep Compression of a 64-300-100-10 MLP (LeNet-300-100's shape) on digits.

    Train; prune by magnitude in the steps of ``schedule`` with fine-tuning after
    each; share weights (``bits`` per layer, biases too); fine-tune the
    codebooks; write the file. Shared by ``dlkernels demo``, the slow test and
    ``bench/compress_pipeline.py``. Uses scikit-learn's digits when installed,
    else a synthetic 64-feature 10-class set (``"data"`` says which).
    """
    import tempfile

    from dlkernels.compress import compression_report, prune_magnitude, quantize, save_compressed

    model, (Xtr, ytr), (Xte, yte), data, gen = _digits_model(torch, seed)

    def accuracy():
        with torch.no_grad():
            return float((model(Xte).argmax(1) == yte).float().mean())

    def train(steps, lr):
        _train(torch, model, Xtr, ytr, gen, steps, lr)

    start = time.perf_counter()
    train(train_steps, 1e-3)
    base = accuracy()
    for amount in schedule:
        prune_magnitude(model, amount)
        train(tune_steps, 1e-3)
    pruned = accuracy()
    quantize(model, bits=bits, bias_bits=bias_bits)
    quantized = accuracy()
    train(tune_steps, 3e-4)   # the codebooks: shared gradients, as in the paper
    final = accuracy()
    if path is None:
        with tempfile.TemporaryDirectory() as tmp:
            size = save_compressed(model, os.path.join(tmp, "digits.fdlz"))
    else:
        size = save_compressed(model, path)
    report = compression_report(model)
    return {"data": data, "base": base, "pruned": pruned, "quantized": quantized, "final": final,
            "bytes": size, "float32_bytes": report.float32_bytes,
            "ratio": report.float32_bytes / size, "report": report, "model": model,
            "test": (Xte, yte), "seconds": time.perf_counter() - start}


def _train(torch, model, X, y, gen, steps: int, lr: float) -> None:
    """Adam on random batches of 128."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        idx = torch.randint(0, len(X), (128,), generator=gen)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(X[idx]), y[idx]).backward()
        opt.step()


def _digits_model(torch, seed: int):
    """The untrained 64-300-100-10 MLP, (train, test) splits, the data's name and a Generator."""
    X, y, data = _digits_or_synthetic(seed)
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(X), generator=gen)
    n_test = int(0.3 * len(X))
    torch.manual_seed(seed)
    sizes = (64, 300, 100, 10)
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1])
    return (model, (X[order[n_test:]], y[order[n_test:]]), (X[order[:n_test]], y[order[:n_test]]),
            data, gen)


def digits_to_size(torch: types.ModuleType, seed: int = 0, *, target_ratio: float = 40,
                   bits: int | None = 5, train_steps: int = 1500, epochs: int = 60,
                   path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The digits MLP trained as in :func:`digits_compression`, then compressed to
    ``target_ratio`` by :func:`dlkernels.compress.compress_to_size` (each layer's pruned
    share, and its bits when ``bits`` is None, chosen by measured sensitivity).
    Shared by the slow test and ``bench/compress_pipeline.py``."""
    import os
    import tempfile

    from dlkernels.compress import compress_to_size, compression_report, save_compressed

    model, (Xtr, ytr), (Xte, yte), data, gen = _digits_model(torch, seed)

    def accuracy():
        with torch.no_grad():
            return float((model(Xte).argmax(1) == yte).float().mean())

    start = time.perf_counter()
    _train(torch, model, Xtr, ytr, gen, train_steps, 1e-3)
    base = accuracy()
    perm = torch.randperm(len(Xtr), generator=gen)
    batches = [(Xtr[perm[i:i + 128]], ytr[perm[i:i + 128]]) for i in range(0, len(Xtr), 128)]
    result = compress_to_size(model, batches, eval_batches=[(Xtr, ytr)], target_ratio=target_ratio,
                              bits=bits, epochs=epochs)
    final = accuracy()
    with tempfile.TemporaryDirectory() as tmp:
        size = save_compressed(model, path if path is not None else os.path.join(tmp, "d.fdlz"))
    report = compression_report(model)
    return {"data": data, "base": base, "final": final, "bytes": size,
            "float32_bytes": report.float32_bytes, "ratio": report.float32_bytes / size,
            "allocation": result, "report": report, "model": model, "test": (Xte, yte),
            "seconds": time.perf_counter() - start}


def _digits_or_synthetic(seed: int):
    import torch

    try:
        from sklearn.datasets import load_digits
    except ImportError:
        # Ten Gaussian classes around random 8x8 "prototypes", in [0, 1] like digits/16.
        g = np.random.default_rng(seed)
        protos = g.random((10, 64))
        y = np.repeat(np.arange(10), 180)
        X = np.clip(protos[y] + 0.35 * g.standard_normal((y.size, 64)), 0, 1)
        data = "synthetic 64-feature 10-class data (scikit-learn is not installed)"
    else:
        X, y = load_digits(return_X_y=True)
        X = X / 16.0
        data = "scikit-learn's digits"
    return torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y), data


def demo_compress(rng: np.random.Generator) -> None:
    try:
        import torch
    except ImportError:
        _skipped("compress", "torch", "torch")
        return
    from dlkernels.compress import prune_units

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: more threads only add waiting
    try:
        # Shorter training than the slow test's (1500 + 500 per stage): about 10 s.
        res = digits_compression(torch, int(rng.integers(2**16)), train_steps=600, tune_steps=200)
    finally:
        torch.set_num_threads(threads)
    print(f"compress: 64-300-100-10 MLP on {res['data']}, pruned to "
          f"{sum(r.kept * r.weights for r in res['report'].layers) / sum(r.weights for r in res['report'].layers):.1%} "
          f"of its weights, 4-bit shared weights and biases, entropy coded "
          f"({res['seconds']:.1f} s in all)")
    print(f"  {res['float32_bytes']} float32 bytes -> {res['bytes']} bytes in the file "
          f"({res['ratio']:.1f}x smaller); test accuracy {res['base']:.2%} -> {res['final']:.2%}")
    for line in str(res["report"]).splitlines():
        print("  " + line)
    # Structural pruning: half the hidden units out, a smaller and faster model.
    torch.manual_seed(int(rng.integers(2**31)))
    big = torch.nn.Sequential(torch.nn.Linear(1024, 2048), torch.nn.ReLU(),
                              torch.nn.Linear(2048, 2048), torch.nn.ReLU(), torch.nn.Linear(2048, 10))
    small = prune_units(big, 0.5)
    x = torch.randn(256, 1024)
    with torch.no_grad():
        _, t_big = _timed(lambda: big(x), repeat=5)
        _, t_small = _timed(lambda: small(x), repeat=5)
    print(f"  prune_units(0.5) on a 1024-2048-2048-10 MLP: inference on 256 rows "
          f"{t_big * 1e3:.1f} ms -> {t_small * 1e3:.1f} ms ({t_big / t_small:.1f}x faster)")
def demo_node2vec(rng: np.random.Generator) -> None:
    from dlkernels.embed import SkipGram
    from dlkernels.graph import Graph, random_walks

    # A stochastic block model: 5 blocks of 100 nodes, dense inside, sparse across.
    n, k = 500, 5
    blocks = np.arange(n) * k // n
    prob = np.where(blocks[:, None] == blocks[None, :], 0.1, 0.004)
    src, dst = np.nonzero(np.triu(rng.random((n, n)) < prob, 1))
    graph = Graph.from_edges(src, dst)
    walks, walk_secs = _timed(lambda: random_walks(graph, walk_length=40, walks_per_node=10,
                                                   q=0.5, rng=rng), repeat=1)
    model = SkipGram(dim=64, window=5, n_negatives=5, epochs=2, rng=rng)
    _, fit_secs = _timed(lambda: model.fit(walks, vocab_size=n), repeat=1)
    # Nearest block centroid of the training half, scored on the other half
    # (numpy only; the tests use a logistic regression).
    v = model.vectors / np.linalg.norm(model.vectors, axis=1, keepdims=True)
    train = rng.permutation(n) < n // 2
    centroids = np.stack([v[train & (blocks == b)].mean(axis=0) for b in range(k)])
    accuracy = np.mean(np.argmax(v[~train] @ centroids.T, axis=1) == blocks[~train])
    words = int(np.count_nonzero(walks >= 0)) * model.epochs
    print(f"node2vec: block-model graph of {n} nodes, {graph.n_edges} edges, {k} blocks; "
          f"{walks.shape[0]} walks of {walks.shape[1]} in {walk_secs * 1e3:.0f} ms")
    print(f"  SkipGram dim 64, window 5, 5 negatives, 2 epochs: {fit_secs:.2f} s "
          f"({words / fit_secs / 1e6:.2f} M words/s); loss per pair "
          f"{model.loss_history[0]:.3f} -> {model.loss_history[-1]:.3f}")
    print(f"  nearest-centroid block accuracy on held-out nodes: {accuracy:.3f}")
def demo_walks(rng: np.random.Generator) -> None:
    from dlkernels.graph import Graph, random_walks

    n, m, length, p, q = 50_000, 500_000, 80, 0.5, 2.0
    g, build = _timed(lambda: Graph.from_edges(rng.integers(0, n, m), rng.integers(0, n, m),
                                               n_nodes=n), repeat=1)
    walks, secs = _timed(lambda: random_walks(g, length, 1, p=p, q=q, rng=rng))
    print(f"node2vec walks: graph of {g.n_nodes} nodes, {g.n_edges} edges built in "
          f"{build * 1e3:.0f} ms; {walks.shape[0]} walks of {length} nodes (p={p}, q={q}) in "
          f"{secs * 1e3:.0f} ms, {walks.size / secs / 1e6:.1f} M steps/s")
    # Exactness on one (previous, current) pair: next-node frequencies vs the formula.
    prev, cur = 0, int(g.neighbors(0)[0])
    many = random_walks(g, 3, 200_000, p=p, q=q, start_nodes=[prev], rng=rng)
    nxt = many[many[:, 1] == cur, 2]
    around = set(g.neighbors(prev).tolist())
    nbrs = g.neighbors(cur)
    bias = np.array([1 / p if x == prev else 1.0 if x in around else 1 / q for x in nbrs.tolist()])
    expected = bias / bias.sum()
    drawn = np.array([np.mean(nxt == x) for x in nbrs.tolist()])
    print(f"  from ({prev} -> {cur}), {nxt.size} draws: return share {drawn[nbrs == prev].sum():.4f} "
          f"(formula {expected[nbrs == prev].sum():.4f}); largest gap over {nbrs.size} "
          f"neighbours {np.abs(drawn - expected).max():.4f}")
def demo_kmeans(rng: np.random.Generator) -> None:
    from dlkernels.cluster import kmeans, kmeans_1d

    # Weight sharing (Deep Compression): 2e5 normally distributed "weights" in 16 clusters.
    w = rng.normal(0, 0.05, 200_000).astype(np.float32)
    exact, secs_exact = _timed(lambda: kmeans_1d(w, 16), repeat=1)
    lloyd, secs_lloyd = _timed(lambda: kmeans_1d(w, 16, method="lloyd", init="linear"))
    print(f"k-means: {w.size} weights into 16 shared values: exact optimum in "
          f"{secs_exact * 1e3:.0f} ms (inertia {exact.inertia:.5g}), Lloyd from linear init in "
          f"{secs_lloyd * 1e3:.0f} ms ({lloyd.n_iter} iterations, inertia {lloyd.inertia:.5g}, "
          f"{lloyd.inertia / exact.inertia - 1:+.2%})")
    # n-D: 20000 points from 32 Gaussian blobs in 16-D.
    means = rng.normal(0, 4, (32, 16))
    X = (means[rng.integers(0, 32, 20_000)] + rng.normal(size=(20_000, 16))).astype(np.float32)
    res, secs = _timed(lambda: kmeans(X, 32, rng=0), repeat=1)
    print(f"  kmeans of {X.shape[0]} points in {X.shape[1]}-D, k=32: {res.n_iter} Lloyd "
          f"iterations in {secs * 1e3:.0f} ms, inertia per point {res.inertia / len(X):.2f} "
          f"(the blobs' own variance: 16)")
