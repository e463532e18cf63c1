"""The ``dlkernels`` command (info, demo, bench) and ``dlkernels.config()``."""

import platform
import re
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

import dlkernels
from dlkernels._lib._openmp_info import max_threads, openmp_enabled

CONFIG_KEYS = {"dlkernels", "python", "platform", "numpy", "cython (build time)", "compiler",
               "openmp", "default threads", "torch", "cuda"}


def console_script() -> str:
    script = Path(sys.executable).with_name("dlkernels")
    assert script.is_file(), f"the `dlkernels` console script is not installed next to {sys.executable}"
    return str(script)


class TestConfig:
    def test_keys_and_values(self):
        cfg = dlkernels.config()
        assert set(cfg) == CONFIG_KEYS
        assert cfg["dlkernels"] == dlkernels.__version__ == metadata.version("dlkernels")
        assert cfg["python"] == platform.python_version()
        assert cfg["numpy"] == np.__version__
        assert re.fullmatch(r"\d+\.\d+.*", cfg["cython (build time)"])
        assert isinstance(cfg["compiler"], str) and cfg["compiler"]
        assert cfg["openmp"].startswith("on") == openmp_enabled()
        assert cfg["default threads"] == max_threads() >= 1

    def test_torch_and_cuda(self, run_python):
        torch = pytest.importorskip("torch")
        cfg = dlkernels.config()
        assert cfg["torch"] == metadata.version("torch") == torch.__version__
        assert cfg["cuda"].startswith("yes: ") == torch.cuda.is_available()
        if torch.cuda.is_available():
            count = torch.cuda.device_count()
            assert cfg["cuda"].startswith(f"yes: {count} device")
            assert torch.cuda.get_device_name(0) in cfg["cuda"]
        # Before torch is imported, config() leaves it so; `dlkernels info` imports it.
        proc = run_python("-c", "import sys, dlkernels; print(dlkernels.config()['cuda']); "
                                "print('torch' in sys.modules)")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines() == ["not checked (torch is not imported)", "False"]
        proc = run_python("-m", "dlkernels", "info")
        assert proc.returncode == 0, proc.stderr
        assert re.search(rf"^\s*cuda: {re.escape(cfg['cuda'])}$", proc.stdout, re.M), proc.stdout

    def test_without_torch(self, run_python):
        # torch made unimportable: info says so, and imports nothing of torch.
        proc = run_python("-c", "import sys; sys.modules['torch'] = None\n"
                          "import dlkernels; dlkernels.show_config()\n"
                          "print('torch imported:', sys.modules['torch'] is not None)")
        assert proc.returncode == 0, proc.stderr
        assert re.search(r'^\s*torch: not installed \(pip install "dlkernels\[torch\]"\)$',
                         proc.stdout, re.M), proc.stdout
        assert re.search(r"^\s*cuda: no \(no torch\)$", proc.stdout, re.M), proc.stdout
        assert proc.stdout.splitlines()[-1] == "torch imported: False"

    def test_show_config_prints_every_key(self, capsys):
        dlkernels.show_config()
        out = capsys.readouterr().out
        for key, value in dlkernels.config().items():
            assert re.search(rf"^\s*{re.escape(key)}: {re.escape(str(value))}$", out, re.M), key

    def test_lazy_subpackages(self):
        assert "sampling" in dir(dlkernels)
        assert dlkernels.sampling.SumTree.__name__ == "SumTree"
        with pytest.raises(AttributeError, match="no_such_thing"):
            dlkernels.no_such_thing


class TestCommand:
    def test_info(self, run_python):
        proc = run_python("-m", "dlkernels", "info")
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == ""
        for key in CONFIG_KEYS:
            assert re.search(rf"^\s*{re.escape(key)}: \S", proc.stdout, re.M), key
        assert re.search(rf"^\s*dlkernels: {re.escape(dlkernels.__version__)}$", proc.stdout, re.M)

    def test_console_script(self, run_python):
        proc = run_python(console_script(), "info")  # run with this interpreter
        assert proc.returncode == 0, proc.stderr
        assert "default threads:" in proc.stdout

    def test_info_honours_omp_num_threads(self, run_python):
        proc = run_python("-m", "dlkernels", "info", env={"OMP_NUM_THREADS": "3"})
        assert proc.returncode == 0, proc.stderr
        want = 3 if openmp_enabled() else 1
        assert re.search(rf"default threads: {want}$", proc.stdout, re.M), proc.stdout

    def test_demo(self, run_python):
        proc = run_python("-m", "dlkernels", "demo", "--seed", "3")
        assert proc.returncode == 0, proc.stderr
        out = proc.stdout
        assert out.startswith(f"dlkernels {dlkernels.__version__} demo")
        assert "seed 3" in out
        for section in ("negative sampling:", "prioritized replay:", "alias method:", "kd-tree:",
                        "lsh:", "torch layer:", "debug:", "k-means:", "compress:",
                        "node2vec walks:", "node2vec:"):
            assert section in out
        assert "none equal to its target: True" in out
        # The heaviest category's share among 10M draws is close to its probability.
        expected, drawn = map(float, re.search(r"expected share ([\d.]+), drawn ([\d.]+)", out).groups())
        assert abs(expected - drawn) < 0.002
        assert "k nearest of 200 queries match brute force: True" in out

    def test_bench_outside_a_checkout(self, run_python):
        proc = run_python("-m", "dlkernels", "bench")
        assert proc.returncode == 1
        assert "needs the bench/ folder of a source checkout" in proc.stdout

    def test_bench_without_asv(self, run_python, tmp_path):
        (tmp_path / "bench").mkdir()
        (tmp_path / "bench" / "asv.conf.json").write_text("{}")
        empty = tmp_path / "no-tools"
        empty.mkdir()
        proc = run_python("-m", "dlkernels", "bench", env={"PATH": str(empty)})
        assert proc.returncode == 1
        assert "dlkernels bench needs asv" in proc.stdout
        assert "make bench" in proc.stdout

    @pytest.mark.parametrize("args", [[], ["nonsense"], ["demo", "--seed", "x"], ["info", "--bogus"]])
    def test_usage_errors(self, run_python, args):
        proc = run_python("-m", "dlkernels", *args)
        assert proc.returncode == 2
        assert "usage: dlkernels" in proc.stderr

    def test_help(self, run_python):
        proc = run_python("-m", "dlkernels", "--help")
        assert proc.returncode == 0
        for command in ("info", "demo", "bench"):
            assert command in proc.stdout


class TestNode2VecCommand:
    EDGES = "".join(f"{a} {b}\n" for a, b in [(0, 1), (1, 2), (2, 0), (10, 11), (11, 12), (12, 10), (2, 10)])

    def run(self, run_python, tmp_path, *extra, weighted=False):
        edges = tmp_path / "graph.edg"
        text = self.EDGES if not weighted else "".join(
            line + " 2.5\n" for line in self.EDGES.splitlines())
        edges.write_text(text)
        out = tmp_path / "emb.txt"
        proc = run_python("-m", "dlkernels", "node2vec", "--input", str(edges), "--output", str(out),
                          "--dimensions", "8", "--walk-length", "10", "--num-walks", "5",
                          "--window-size", "3", "--workers", "2", "--seed", "1", *extra)
        return proc, out

    def test_writes_word2vec_text(self, run_python, tmp_path):
        proc, out = self.run(run_python, tmp_path, "--p", "0.5", "--q", "2", "--iter", "2")
        assert proc.returncode == 0, proc.stderr
        assert "6 nodes" in proc.stdout
        lines = out.read_text().splitlines()
        assert lines[0] == "6 8"
        assert sorted(int(line.split()[0]) for line in lines[1:]) == [0, 1, 2, 10, 11, 12]
        assert all(len(line.split()) == 9 for line in lines[1:])

    def test_weighted_directed(self, run_python, tmp_path):
        proc, out = self.run(run_python, tmp_path, "--weighted", "--directed", weighted=True)
        assert proc.returncode == 0, proc.stderr
        assert out.read_text().startswith("6 8\n")

    def test_seed_reproducible_on_one_worker(self, run_python, tmp_path):
        texts = []
        for _ in range(2):
            proc, out = self.run(run_python, tmp_path, "--workers", "1")
            assert proc.returncode == 0, proc.stderr
            texts.append(out.read_text())
        assert texts[0] == texts[1]

    @pytest.mark.parametrize("extra, message", [(["--dimensions", "0"], "dim"),
                                                 (["--p", "0"], "p must be"),
                                                 (["--weighted"], "weight")])
    def test_bad_input(self, run_python, tmp_path, extra, message):
        proc, out = self.run(run_python, tmp_path, *extra)
        assert proc.returncode == 2
        assert message in proc.stderr and "Traceback" not in proc.stderr
        assert not out.exists()

    def test_missing_file(self, run_python, tmp_path):
        proc = run_python("-m", "dlkernels", "node2vec", "--input", str(tmp_path / "none.edg"),
                          "--output", str(tmp_path / "o.txt"))
        assert proc.returncode == 2 and "none.edg" in proc.stderr

    def test_walks_too_large_are_refused_at_once(self, run_python, tmp_path):
        import time

        started = time.perf_counter()
        proc, out = self.run(run_python, tmp_path, "--walk-length", "2000000000")
        assert time.perf_counter() - started < 60   # the process itself, not a long walk
        assert proc.returncode == 2
        assert "walk_length" in proc.stderr and "more than this machine's memory" in proc.stderr
        assert "Traceback" not in proc.stderr and not out.exists()

    def test_binary_input_names_the_file(self, run_python, tmp_path):
        garbage = tmp_path / "garbage.edg"
        garbage.write_bytes(bytes(range(255, -1, -1)) * 4)
        proc = run_python("-m", "dlkernels", "node2vec", "--input", str(garbage),
                          "--output", str(tmp_path / "o.txt"))
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert f"{garbage}:1: not UTF-8 text" in proc.stderr
