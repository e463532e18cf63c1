"""Crafted ``.fdlz`` files (issue 13): each is refused with FileFormatError naming the file,
quickly, before anything large is allocated or built.

The crafted files have a correct CRC: they test the parser, not the checksum. Memory is
checked in a child process whose address space is capped at what it had after importing
torch plus 300 MB, so allocations that tracemalloc cannot see (torch's) count too.
"""

import json
import struct
import textwrap
import time
import zlib

import pytest

torch = pytest.importorskip("torch")

from dlkernels import FileFormatError  # noqa: E402
from dlkernels.compress import load_compressed, quantize, save_compressed  # noqa: E402


def v1_file(header, payload: bytes = b"") -> bytes:
    """A format-1 file around ``header`` (a dict, or bytes already zlib-compressed)."""
    head = header if isinstance(header, bytes) else zlib.compress(json.dumps(header).encode())
    body = struct.pack("<4sBI", b"FDLZ", 1, len(head)) + head + payload
    return body + struct.pack("<I", zlib.crc32(body))


def linear(n_in, n_out, **extra):
    return ["Sequential", [["0", ["Linear", {"in_features": n_in, "out_features": n_out,
                                            "bias": False, **extra}]]]]


def one_symbol(count, alphabet=2):
    return {"a": alphabet, "w": 0, "c": count, "b": 0, "one": 0}


def _nested(depth) -> bytes:
    """A header whose architecture nests ``depth`` Sequentials (written as text: json
    itself would recurse too deep)."""
    arch = '["Sequential", [["0", ' * depth + '["ReLU", {}]' + "]]]" * depth
    return zlib.compress(('{"arch": ' + arch + ', "tensors": []}').encode())


def _bomb() -> bytes:
    """200 MB of JSON whitespace deflated to about 200 KB."""
    c = zlib.compressobj(9)
    chunk = b" " * (1 << 20)
    return b"".join([c.compress(b'{"arch": null, "tensors": []') ] +
                    [c.compress(chunk) for _ in range(200)] + [c.compress(b"}"), c.flush()])


CASES = {
    "Linear(16000, 16000), no tensors": lambda: v1_file({"arch": linear(16000, 16000), "tensors": []}),
    "Linear(50000, 50000), no tensors": lambda: v1_file({"arch": linear(50000, 50000), "tensors": []}),
    "zlib bomb header": lambda: v1_file(_bomb()),
    "sparse shape [2**28]": lambda: v1_file({"arch": None, "tensors": [
        {"name": "w", "shape": [2**28], "dtype": "float64", "k": "s", "nnz": 0,
         "p": {"cap": 2, **one_symbol(2**27, 3)}}]}),
    "one-symbol count 2**28": lambda: v1_file({"arch": None, "tensors": [
        {"name": "w", "shape": [2**28], "dtype": "float32", "k": "q", "K": 1, "m": "dense",
         "v": one_symbol(2**28)}]}, b"\0\0\0\0"),
    "one-symbol count 2**40": lambda: v1_file({"arch": None, "tensors": [
        {"name": "w", "shape": [2**40], "dtype": "float32", "k": "q", "K": 1, "m": "dense",
         "v": one_symbol(2**40)}]}, b"\0\0\0\0"),
    "count above the shape": lambda: v1_file({"arch": None, "tensors": [
        {"name": "w", "shape": [4], "dtype": "float32", "k": "q", "K": 1, "m": "dense",
         "v": one_symbol(2**28)}]}, b"\0\0\0\0"),
    "device meta": lambda: v1_file({"arch": linear(2, 2, device="meta"), "tensors": []}),
    "device cuda": lambda: v1_file({"arch": linear(2, 2, device="cuda"), "tensors": []}),
    "dtype argument": lambda: v1_file({"arch": linear(2, 2, dtype="float64"), "tensors": []}),
    "nested 900 deep": lambda: v1_file(_nested(900)),
    "nested 100000 deep JSON": lambda: v1_file(b"".join([zlib.compress(
        b'{"arch": ' + b"[" * 100000 + b"]" * 100000 + b', "tensors": []}')])),
    "in_features -1": lambda: v1_file({"arch": linear(-1, 2), "tensors": []}),
    "in_features true": lambda: v1_file({"arch": linear(True, 2), "tensors": []}),
    "unknown layer": lambda: v1_file({"arch": ["Sequential", [["0", ["Bilinear", {}]]]],
                                      "tensors": []}),
    "layer named os.system": lambda: v1_file({"arch": ["os.system", {}], "tensors": []}),
    "Huffman stream claiming 2**40 bits": lambda: v1_file({"arch": None, "tensors": [
        {"name": "w", "shape": [8], "dtype": "float32", "k": "q", "K": 1, "m": "dense",
         "v": {"a": 2, "w": 1, "c": 8, "b": 2**40, "one": -1}}]}, b"\0\0\0\0\xc0"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_crafted_file_is_refused(case, tmp_path):
    path = tmp_path / "crafted.fdlz"
    path.write_bytes(CASES[case]())
    started = time.perf_counter()
    with pytest.raises(FileFormatError, match="not a valid compressed model") as info:
        load_compressed(path)
    assert time.perf_counter() - started < 1.0
    assert str(path) in str(info.value)


def test_crafted_files_allocate_little(tmp_path, run_python):
    """In a child whose address space is capped, every case is still a clean refusal."""
    paths = []
    for i, case in enumerate(sorted(CASES)):
        path = tmp_path / f"case{i}.fdlz"
        path.write_bytes(CASES[case]())
        paths.append(str(path))
    script = textwrap.dedent(f"""
        import resource, sys
        import torch
        from dlkernels import FileFormatError
        from dlkernels.compress import load_compressed
        with open("/proc/self/status") as f:
            vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize"))
        resource.setrlimit(resource.RLIMIT_AS, (vm + 300 * 2**20, resource.RLIM_INFINITY))
        for path in {paths!r}:
            try:
                load_compressed(path)
            except FileFormatError:
                continue
            print("loaded", path)
            sys.exit(1)
        print("all refused")
    """)
    proc = run_python("-c", script, env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0 and "all refused" in proc.stdout, proc.stdout + proc.stderr


def test_garbage_and_foreign_files_name_the_file(tmp_path):
    for name, blob in {"text": b"hello world, not a model at all",
                       "zip": b"PK\x03\x04" + bytes(60), "empty": b"",
                       "newer": b"FDLZ\x09" + bytes(8)}.items():
        path = tmp_path / f"{name}.fdlz"
        path.write_bytes(blob)
        with pytest.raises(FileFormatError, match=name):
            load_compressed(path)


def test_new_files_do_not_build_what_they_do_not_hold(tmp_path):
    """Format 2: an architecture whose tensors are not in the file is refused (and no
    Linear is allocated: the build happens on the meta device after the check)."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    save_compressed(model, tmp_path / "m.fdlz")
    body = (tmp_path / "m.fdlz").read_bytes()[:-4]
    # The same file with its header swapped for one describing Linear(16000, 16000).
    from dlkernels.compress._arch import describe
    from dlkernels.compress._format2 import encode_header

    with torch.device("meta"):      # the description only: no gigabyte here either
        big = torch.nn.Sequential(torch.nn.Linear(16000, 16000))
    spec = describe(big, "", {"0.weight", "0.bias"})
    header = encode_header(spec, [("0.weight", (16000, 16000), "float32"),
                                  ("0.bias", (16000,), "float32")])
    old_header_len = body[5] + 1
    crafted = body[:5] + header + body[5 + old_header_len:]
    (tmp_path / "c.fdlz").write_bytes(crafted + struct.pack("<I", zlib.crc32(crafted)))
    with pytest.raises(FileFormatError, match="c.fdlz"):
        load_compressed(tmp_path / "c.fdlz")


def test_quantized_round_trip_keeps_dtype_and_values(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(30, 20)).to(torch.float64)
    quantize(model, bits=3)
    save_compressed(model, tmp_path / "q.fdlz")
    loaded = load_compressed(tmp_path / "q.fdlz")
    model(torch.zeros(1, 30, dtype=torch.float64))
    assert loaded[0].weight.dtype == torch.float64
    assert torch.equal(loaded[0].weight, model[0].weight)
