"""Speed and memory of the issue-15 layers against their peers, as tables.

    python bench/nn_layers.py                         # all three tables
    python bench/nn_layers.py --only attention --repeat 5 --threads 1
    python bench/nn_layers.py --device cuda           # on a GPU (time and peak memory)

1. Output layers, one training step (forward + backward, gradients freed) at
   V = 100,000, d = 300, batch 512, Zipf targets: VonMisesFisherLoss and
   BinaryCodeSoftmax against nn.Linear + cross_entropy and the Huffman
   HierarchicalSoftmax.
2. VonMisesFisherLoss.predict at V = 100,000, d = 300, 512 queries: exact
   (matrix product) against the LSHIndex path, with its recall.
3. Attention at seq 4096 and 16384, dim 64, one head: LSHAttention (bucket 64,
   4 rounds) against reformer-pytorch's LSHAttention (same bucket size and
   rounds), full attention with the scores materialised, and torch's fused
   scaled_dot_product_attention (the self-mask passed as a boolean mask).

Times are the best of ``--repeat`` calls after one warm-up. Memory on the CPU is
the peak resident memory a call adds (Linux's VmHWM after resetting it), measured
in a fresh subprocess per implementation, first call included (so one case's
allocations, or allocator caches, do not hide another's); on CUDA,
``torch.cuda.max_memory_allocated`` above what the inputs hold. Ratios compare
implementations timed in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchmarks import _nn_peers as peers  # noqa: E402

ATTENTION_SIZES = (4096, 16384)
PREDICT_QUERIES = 512


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]


def best_time(fn, repeat: int, device: str) -> float:
    """Best seconds per call after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        if device == "cuda":
            torch.cuda.synchronize()
        start = clock()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(clock() - start)
    return min(times)


def _status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def peak_memory(kind: str, name: str, size: int, device: str, threads: int) -> float:
    """Peak bytes one call adds, measured in a fresh interpreter."""
    cmd = [sys.executable, os.path.abspath(__file__), "--memory-of", kind, name, str(size),
           "--device", device, "--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if out.returncode:
        return float("nan")
    return json.loads(out.stdout.strip().splitlines()[-1])["bytes"]


def measure_memory_here(kind: str, name: str, size: int, device: str) -> int:
    """Set up, then run one call and report the peak it adds (the --memory-of entry)."""
    if kind == "output":
        step = peers.output_step(torch, name, device=device)[0]
    else:
        step = peers.attention_step(torch, name, n=size, device=device)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    # Linux: writing 5 to clear_refs resets the peak resident size (VmHWM) to the
    # current one, so set-up and imports do not count.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = _status_bytes("VmRSS")
    step()
    return _status_bytes("VmHWM") - base


def layer_bytes(layer) -> int:
    """Parameters and buffers of a layer (the output layer's own memory)."""
    tensors = list(layer.parameters()) + list(layer.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def mb(n: float) -> str:
    return "-" if n != n else f"{n / 2**20:,.1f}"


def output_table(args) -> None:
    print(f"\n1. Output layers: one training step, V={peers.OUT_V:,}, d={peers.OUT_D}, "
          f"batch {peers.OUT_BATCH}, {args.threads} thread(s), {args.device}")
    print(f"{'layer':42} {'ms/step':>9} {'vs Linear':>10} {'layer MB':>9} {'peak MB':>9}")
    times = {}
    for name, label in peers.OUTPUT_LAYERS.items():
        step, layer = peers.output_step(torch, name, device=args.device)
        times[name] = best_time(step, args.repeat, args.device)
        size = layer_bytes(layer)
        peak = peak_memory("output", name, 0, args.device, args.threads)
        ratio = times["linear"] / times[name]
        print(f"{label:42} {times[name] * 1e3:9.1f} {ratio:9.1f}x {mb(size):>9} {mb(peak):>9}",
              flush=True)
        del step, layer
    print("layer MB: parameters and buffers (VonMisesFisherLoss: its fixed target embeddings); "
          "peak MB: memory one step adds.")


def predict_table(args) -> None:
    from dlkernels.nn import VonMisesFisherLoss

    V, d = peers.OUT_V, peers.OUT_D
    rng = np.random.default_rng(0)
    # Clumpy embeddings (1,000 directions plus noise), like trained word vectors, and
    # queries near a random target at two noise levels.
    centres = rng.standard_normal((1000, d))
    E = centres[rng.integers(0, 1000, V)] + 0.8 * rng.standard_normal((V, d))
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    loss = VonMisesFisherLoss(torch.as_tensor(E, dtype=torch.float32))
    start = time.perf_counter()
    loss.build_index(rng=0)
    build = time.perf_counter() - start
    print(f"\n2. VonMisesFisherLoss.predict: V={V:,}, d={d}, {PREDICT_QUERIES} queries, "
          f"{args.threads} thread(s); LSH index (32 tables) built in {build:.1f} s")
    print(f"{'queries':18} {'method':16} {'ms':>9} {'speed-up':>9} {'recall@1':>9} "
          f"{'recall@10':>10}")
    for noise, label in ((0.5, "cos ~0.9 to target"), (1.0, "cos ~0.7 to target")):
        target = rng.integers(0, V, PREDICT_QUERIES)
        q = E[target] + noise * rng.standard_normal((PREDICT_QUERIES, d)) / np.sqrt(d)
        queries = torch.as_tensor(q, dtype=torch.float32)
        exact = loss.predict(queries, 10, method="exact")
        t_exact = best_time(lambda: loss.predict(queries, 10, method="exact"), args.repeat,
                            "cpu")
        print(f"{label:18} {'exact':16} {t_exact * 1e3:9.1f} {'1.0x':>9} {1.0:9.3f} {1.0:10.3f}")
        for n_probes in (8, 32, 128):
            got = loss.predict(queries, 10, method="lsh", n_probes=n_probes)
            t = best_time(lambda: loss.predict(queries, 10, method="lsh", n_probes=n_probes),
                          args.repeat, "cpu")
            r1 = float((got[:, 0] == exact[:, 0]).float().mean())
            r10 = float(np.mean([len(set(a) & set(b)) / 10 for a, b in
                                 zip(got.tolist(), exact.tolist())]))
            print(f"{'':18} {f'lsh n_probes={n_probes}':16} {t * 1e3:9.1f} "
                  f"{t_exact / t:8.1f}x {r1:9.3f} {r10:10.3f}", flush=True)


def attention_table(args) -> None:
    print(f"\n3. Attention, one head, dim {peers.ATTENTION_DIM}, bucket "
          f"{peers.ATTENTION_BUCKET}, {peers.ATTENTION_HASHES} rounds, {args.threads} "
          f"thread(s), {args.device}")
    print(f"{'seq':>6} {'implementation':38} {'fwd ms':>9} {'fwd+bwd ms':>11} "
          f"{'LSH faster':>11} {'peak MB':>9}")
    for n in ATTENTION_SIZES:
        results = {}
        for name, label in peers.ATTENTIONS.items():
            try:
                fwd = best_time(peers.attention_step(torch, name, n=n, backward=False,
                                                     device=args.device), args.repeat,
                                args.device)
                both = best_time(peers.attention_step(torch, name, n=n, device=args.device),
                                 args.repeat, args.device)
            except NotImplementedError as missing:
                print(f"{n:6} {label:38} skipped: {missing}")
                continue
            results[name] = both
            peak = peak_memory("attention", name, n, args.device, args.threads)
            ratio = both / results["dlkernels"]
            print(f"{n:6} {label:38} {fwd * 1e3:9.1f} {both * 1e3:11.1f} {ratio:10.1f}x "
                  f"{mb(peak):>9}", flush=True)
    print("LSH faster: forward+backward time of the row / that of dlkernels LSHAttention; "
          "peak MB: memory a forward+backward adds.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["output", "predict", "attention"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--clock", choices=list(CLOCKS), default="wall",
                        help="cpu: the process's CPU time, steadier than wall time on a "
                             "machine shared with other jobs (use with --threads 1)")
    parser.add_argument("--memory-of", nargs=3, metavar=("KIND", "NAME", "SIZE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    global clock
    clock = CLOCKS["wall" if args.device == "cuda" else args.clock]
    if args.memory_of:
        kind, name, size = args.memory_of
        print(json.dumps({"bytes": measure_memory_here(kind, name, int(size), args.device)}))
        return
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {args.clock} clock")
    tables = {"output": output_table, "predict": predict_table, "attention": attention_table}
    for key, table in tables.items():
        if args.only in (None, key):
            table(args)


if __name__ == "__main__":
    main()
