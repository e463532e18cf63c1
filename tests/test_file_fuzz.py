"""Every .npz format against damaged and crafted files.

A file is data from outside. Whatever its bytes, ``load`` must either return an
object equal to what was saved or raise :class:`dlkernels.FileFormatError`; it
must never crash, hang, run code, or allocate far more than the file holds.
"""

import io
import time
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest

from dlkernels import FileFormatError
from dlkernels.embed import SkipGram
from dlkernels.graph import Graph, Node2Vec
from dlkernels.neighbors import KDTree, LSHIndex
from dlkernels.sampling import AliasSampler, NegativeSampler, PrioritizedSampler, SumTree

_rng = np.random.default_rng(0)
_POINTS = _rng.standard_normal((300, 3))
_WALKS = _rng.integers(0, 12, size=(40, 10))
_RING = Graph.from_edges([0, 1, 2, 3, 4], [1, 2, 3, 4, 0], weights=[1.0, 2.0, 0.5, 1.0, 3.0])
_GRAPH = Graph(_RING.indptr, _RING.indices, _RING.weights, node_ids=np.array(list("abcde")))


def _kdtree():
    tree = KDTree(_POINTS[:200], leafsize=8)
    tree.add(_POINTS[200:])          # a forest of two trees
    return tree


def _kdtree32():
    tree = KDTree(_POINTS[:150].astype(np.float32), leafsize=4)
    tree.add(_POINTS[150:].astype(np.float32))
    return tree


def _lsh(hashing):
    def make():
        index = LSHIndex(3, metric="l2", hashing=hashing, n_tables=2, n_bits=6, rng=0)
        index.add(_POINTS)
        index.remove([3, 5])
        return index
    return make


def _per():
    per = PrioritizedSampler(50)
    per.update(np.arange(50), _rng.random(50))
    return per


def _skipgram():
    return SkipGram(dim=8, window=2, epochs=1, rng=0, n_threads=1).fit(_WALKS)


def _node2vec():
    return Node2Vec(dim=8, walk_length=5, walks_per_node=2, window=2, rng=0,
                    n_threads=1).fit(_GRAPH)


# name -> (make, load, a function of the object that must survive a round trip)
FORMATS = {
    "SumTree": (lambda: SumTree.from_weights(_rng.random(64)), SumTree.load,
                lambda o: o.values),
    "PrioritizedSampler": (_per, PrioritizedSampler.load, lambda o: o.tree.values),
    "AliasSampler": (lambda: AliasSampler(_rng.random(64)), AliasSampler.load,
                     lambda o: o.probabilities),
    "NegativeSampler": (lambda: NegativeSampler(_rng.integers(0, 9, 64)), NegativeSampler.load,
                        lambda o: o.probabilities),
    "KDTree": (_kdtree, KDTree.load, lambda o: o.query(_POINTS[:5], k=3)[1]),
    # float32 arrays, and a tree of one leaf (no inner nodes: dims and vals unused)
    "KDTree-float32": (_kdtree32, KDTree.load, lambda o: o.query(_POINTS[:5], k=3)[1]),
    "KDTree-one-leaf": (lambda: KDTree(_POINTS[:7]), KDTree.load,
                        lambda o: o.query(_POINTS[:5], k=3)[1]),
    "LSHIndex": (_lsh("kmeans"), LSHIndex.load, lambda o: o.query(_POINTS[:5], k=3)),
    "LSHIndex-random": (_lsh("random"), LSHIndex.load, lambda o: o.query(_POINTS[:5], k=3)),
    "Graph": (lambda: _GRAPH, Graph.load, lambda o: o.to_scipy().toarray()),
    "Graph (mmap)": (lambda: _GRAPH, lambda p: Graph.load(p, mmap=True),
                     lambda o: o.to_scipy().toarray()),
    "SkipGram": (_skipgram, SkipGram.load, lambda o: o.vectors),
    "Node2Vec": (_node2vec, Node2Vec.load, lambda o: o.vectors),
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("formats")
    files = {}
    for name, (make, load, view) in FORMATS.items():
        path = folder / f"{name}.npz"
        make().save(path)
        files[name] = (path.read_bytes(), view(load(path)))
    return files


def _load_or_refuse(name, data, tmp_path, expected):
    path = tmp_path / f"{name}.npz"
    path.write_bytes(data)
    load, view = FORMATS[name][1], FORMATS[name][2]
    try:
        obj = load(path)
    except FileFormatError as exc:
        assert str(path) in str(exc)
        return False
    np.testing.assert_array_equal(view(obj), expected)
    return True


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_truncated_files_are_refused(saved, tmp_path, name):
    data, expected = saved[name]
    # Every cut in the zip directory and headers, and a spread through the data.
    cuts = sorted(set(range(0, len(data), max(1, len(data) // 300))) |
                  set(range(max(0, len(data) - 400), len(data))))
    for cut in cuts:
        assert not _load_or_refuse(name, data[:cut], tmp_path, expected), cut


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_flipped_bytes_are_refused_or_harmless(saved, tmp_path, name):
    data, expected = saved[name]
    rng = np.random.default_rng(1)
    positions = rng.choice(len(data), size=min(len(data), 400), replace=False)
    refused = 0
    for pos in positions:
        flipped = bytearray(data)
        flipped[pos] ^= 1 << int(rng.integers(8))
        refused += not _load_or_refuse(name, bytes(flipped), tmp_path, expected)
    # Flips in zip timestamps and attributes are harmless; almost all others are caught.
    assert refused > len(positions) // 2


def _members(data: bytes) -> dict:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {info.filename[:-4]: zf.read(info) for info in zf.infolist()}


def _rezip(members: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, raw in members.items():
            zf.writestr(name + ".npy", raw)
    return buf.getvalue()


def _npy(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _huge_header(raw: bytes) -> bytes:
    """The member's .npy header rewritten to claim 2**40 times its rows; data unchanged."""
    arr = np.load(io.BytesIO(raw))
    shape = (max(arr.shape[0] if arr.ndim else 1, 1) << 40,) + arr.shape[1:]
    header = repr({"descr": np.lib.format.dtype_to_descr(arr.dtype), "fortran_order": False,
                   "shape": shape}).encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    body = raw[len(raw) - arr.nbytes:] if arr.nbytes else b""
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + body


def _crafted(data: bytes):
    """Variants of a valid file: each member with a lying header, each int scalar absurd."""
    members = _members(data)
    for key, raw in members.items():
        if key.startswith("__"):
            continue
        yield f"{key}: header claims 2**40 rows", _rezip({**members, key: _huge_header(raw)})
        arr = np.load(io.BytesIO(raw))
        if arr.dtype.kind in "iu" and arr.size:
            info = np.iinfo(arr.dtype)
            for value in (2**40, 2**62, -1, info.max):
                value = min(max(value, info.min), info.max)   # the extremes the dtype holds
                yield f"{key} = {value}", _rezip({**members, key: _npy(np.full_like(arr, value))})


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_crafted_sizes_are_refused_quickly_and_without_allocating(saved, tmp_path, name):
    data, expected = saved[name]

    def attempt(crafted):
        try:
            _load_or_refuse(name, crafted, tmp_path, expected)
        except AssertionError:
            pass  # a legal but different value (a count of 2**40) loads a different object

    for what, crafted in _crafted(data):
        _, seconds, peak = _measured(attempt, crafted)
        assert seconds < 1.0, f"{what}: {seconds:.2f} s"
        assert peak < 100 * 2**20, f"{what}: {peak / 2**20:.0f} MB"


def _measured(fn, *args):
    """(result, seconds, peak traced bytes) of ``fn(*args)``."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        return fn(*args), time.perf_counter() - started, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_plain_npy_and_foreign_zip_are_refused(saved, tmp_path, name):
    buf = io.BytesIO()
    np.save(buf, np.arange(10))
    assert not _load_or_refuse(name, buf.getvalue(), tmp_path, None)
    assert not _load_or_refuse(name, _rezip({"x": _npy(np.arange(3))}), tmp_path, None)


# -- .fdlz (compressed torch models): its own format, same rules ------------------------
def _fdlz_models():
    torch = pytest.importorskip("torch")
    from dlkernels.compress import prune_magnitude, quantize

    torch.manual_seed(0)
    seq = torch.nn.Sequential(torch.nn.Linear(12, 10), torch.nn.BatchNorm1d(10), torch.nn.ReLU(),
                              torch.nn.Linear(10, 4))
    prune_magnitude(seq, 0.6)
    quantize(seq, bits=3, bias_bits=2)

    class Net(torch.nn.Module):           # no architecture in the file: names and shapes
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(6, 5)

        def forward(self, x):
            return self.a(x)

    net = Net()
    quantize(net, bits=2)
    return {"sequential": (seq, None), "skeleton": (net, Net)}


@pytest.fixture(scope="module")
def fdlz_files(tmp_path_factory):
    from dlkernels.compress import save_compressed

    folder = tmp_path_factory.mktemp("fdlz")
    out = {}
    for name, (model, skeleton) in _fdlz_models().items():
        path = folder / f"{name}.fdlz"
        save_compressed(model, path)
        state = {k: v.clone() for k, v in _fdlz_load(path, skeleton).state_dict().items()}
        out[name] = (path.read_bytes(), skeleton, state)
    return out


def _fdlz_load(path, skeleton):
    from dlkernels.compress import load_compressed

    return load_compressed(path, model=None if skeleton is None else skeleton())


def _fdlz_try(data, tmp_path, skeleton):
    """True if it loads, False if refused with a FileFormatError naming the file."""
    path = tmp_path / "f.fdlz"
    path.write_bytes(data)
    try:
        _fdlz_load(path, skeleton)
    except FileFormatError as exc:
        assert str(path) in str(exc)
        return False
    return True


def _recrc(body: bytes) -> bytes:
    return body + zlib.crc32(body).to_bytes(4, "little")


@pytest.mark.parametrize("name", ["sequential", "skeleton"])
def test_fdlz_truncated_and_flipped_files_are_refused(fdlz_files, tmp_path, name):
    data, skeleton, _ = fdlz_files[name]
    for cut in range(len(data)):
        assert not _fdlz_try(data[:cut], tmp_path, skeleton), cut
    rng = np.random.default_rng(2)
    for pos in rng.choice(len(data), size=min(len(data), 200), replace=False):
        flipped = bytearray(data)
        flipped[pos] ^= 1 << int(rng.integers(8))
        assert not _fdlz_try(bytes(flipped), tmp_path, skeleton), pos   # the CRC catches it


@pytest.mark.parametrize("name", ["sequential", "skeleton"])
def test_fdlz_crafted_bytes_are_refused_quickly_and_without_allocating(fdlz_files, tmp_path, name):
    """Every byte of the file set to 0x00, 0xFF and flipped, with the CRC made right again:
    the parser itself must refuse (or load a legal different model) in < 1 s and < 100 MB."""
    data, skeleton, state = fdlz_files[name]
    body = data[:-4]
    loaded = refused = 0
    for pos in range(4, len(body)):
        for value in (0x00, 0xFF, body[pos] ^ 0x10):
            crafted = bytearray(body)
            crafted[pos] = value
            ok, seconds, peak = _measured(_fdlz_try, _recrc(bytes(crafted)), tmp_path, skeleton)
            assert seconds < 1.0, f"byte {pos} = {value}: {seconds:.2f} s"
            assert peak < 100 * 2**20, f"byte {pos} = {value}: {peak / 2**20:.0f} MB"
            loaded += ok
            refused += not ok
    assert refused and loaded   # both paths taken: raw values may change legally


def test_fdlz_crafted_sizes_are_refused(tmp_path):
    """A format-2 header without an architecture that declares absurd shapes."""
    from dlkernels.compress import load_compressed
    from dlkernels.compress._format2 import encode_header

    for shape in [(2**40,), (2**20, 2**20), (2**28,), (3, 2**62)]:
        header = encode_header(None, [("w", shape, "float32")])
        body = b"FDLZ\x02" + header + b"\x01\x00"      # one raw tensor's meta, no values
        path = tmp_path / "s.fdlz"
        path.write_bytes(_recrc(body))
        with pytest.raises(FileFormatError, match="s.fdlz"):
            _measured(load_compressed, path)
        _, seconds, peak = _measured(_fdlz_try, _recrc(body), tmp_path, None)
        assert seconds < 1.0 and peak < 100 * 2**20, shape
