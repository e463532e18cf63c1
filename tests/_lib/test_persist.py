"""dlkernels._lib.persist and every class's save/load: npz archives, never pickle."""

import builtins
import io
import pickle
import time
import zipfile

import numpy as np
import pytest

from dlkernels._lib.persist import (
    FORMAT_VERSION,
    FileFormatError,
    load_arrays,
    read_archive,
    save_arrays,
)
from dlkernels.sampling import AliasSampler, NegativeSampler, PrioritizedSampler, SumTree

CLASSES = {
    "SumTree": lambda: SumTree.from_weights([1.0, 0.0, 2.0]),
    "PrioritizedSampler": lambda: PrioritizedSampler(3),
    "AliasSampler": lambda: AliasSampler([1.0, 0.0, 2.0]),
    "NegativeSampler": lambda: NegativeSampler([5, 0, 2]),
}
LOADERS = {"SumTree": SumTree.load, "PrioritizedSampler": PrioritizedSampler.load,
           "AliasSampler": AliasSampler.load, "NegativeSampler": NegativeSampler.load}


class _RunsCodeWhenUnpickled:
    """Unpickling this writes a marker file: proof that a loader ran code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (builtins.exec, (f"open({str(self.marker)!r}, 'w').close()",))


SPEC = {"x": ("int64", (None,)), "y": ("float64", ()), "name": ("<U3", ())}


def test_round_trip(tmp_path):
    path = tmp_path / "a.npz"
    save_arrays(path, "Thing", x=np.array([1, 2, 3]), y=2.5, name=np.array("abc"))
    got = load_arrays(str(path), "Thing", SPEC)
    assert set(got) == {"x", "y", "name"}
    np.testing.assert_array_equal(got["x"], [1, 2, 3])
    assert float(got["y"]) == 2.5 and str(got["name"]) == "abc"
    got["x"][0] = 7  # loaded arrays are the caller's to change


def test_save_writes_exactly_the_path_given(tmp_path):
    save_arrays(tmp_path / "model", "Thing", x=np.arange(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]   # no .npz added, no temp left
    assert load_arrays(tmp_path / "model", "Thing", {"x": ("int64", (3,))})["x"].tolist() == [0, 1, 2]


def test_save_replaces_atomically(tmp_path):
    path = tmp_path / "a.npz"
    save_arrays(path, "Thing", x=np.arange(3))
    with pytest.raises(TypeError, match="object"):
        save_arrays(path, "Thing", x=np.array([None], dtype=object))
    assert load_arrays(path, "Thing", {"x": ("int64", (3,))})["x"].tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz"]


def test_other_kind_is_refused(tmp_path):
    save_arrays(tmp_path / "a.npz", "Thing", x=[1])
    with pytest.raises(FileFormatError, match="a Thing file, not a Other file"):
        load_arrays(tmp_path / "a.npz", "Other", {"x": ("int64", (1,))})


def test_foreign_archive_is_refused(tmp_path):
    np.savez(tmp_path / "a.npz", x=np.arange(3))
    with pytest.raises(FileFormatError, match="foreign"):
        load_arrays(tmp_path / "a.npz", "Thing", {"x": ("int64", (3,))})


def test_newer_format_is_refused(tmp_path):
    np.savez(tmp_path / "a.npz", __kind__=np.array("Thing"),
             __version__=np.array(FORMAT_VERSION + 1), x=np.arange(3))
    with pytest.raises(FileFormatError, match="newer"):
        load_arrays(tmp_path / "a.npz", "Thing", {"x": ("int64", (3,))})


@pytest.mark.parametrize("extra, missing", [(True, False), (False, True)])
def test_member_set_must_be_exact(tmp_path, extra, missing):
    fields = {"x": np.arange(3), "y": np.float64(1)}
    if extra:
        fields["z"] = np.zeros(2)
    if missing:
        del fields["y"]
    save_arrays(tmp_path / "a.npz", "Thing", **fields)
    with pytest.raises(FileFormatError, match="unexpected z" if extra else "lacks y"):
        load_arrays(tmp_path / "a.npz", "Thing", {"x": ("int64", (3,)), "y": ("float64", ())})


def test_optional_members_are_allowed_but_typed(tmp_path):
    save_arrays(tmp_path / "a.npz", "Thing", x=np.arange(3), w=np.ones(3))
    spec, opt = {"x": ("int64", (3,))}, {"w": ("float64", (3,))}
    assert set(load_arrays(tmp_path / "a.npz", "Thing", spec, opt)) == {"x", "w"}
    save_arrays(tmp_path / "b.npz", "Thing", x=np.arange(3), w=np.ones(3, np.float32))
    with pytest.raises(FileFormatError, match="w has dtype float32, expected float64"):
        load_arrays(tmp_path / "b.npz", "Thing", spec, opt)


@pytest.mark.parametrize("value, kind", [(np.array("yes"), bool), (np.array(1.5), int),
                                         (np.array(True), float), (np.array([1, 2]), int),
                                         (np.array(np.nan), float), (np.array(7), bool)])
def test_scalars_are_read_by_kind_never_coerced(tmp_path, value, kind):
    save_arrays(tmp_path / "a.npz", "Thing", flag=value)
    with pytest.raises(FileFormatError, match="flag"):
        with read_archive(tmp_path / "a.npz", "Thing") as archive:
            archive.scalar("flag", kind)


def test_scalar_bounds(tmp_path):
    save_arrays(tmp_path / "a.npz", "Thing", n=np.int64(2**40))
    with read_archive(tmp_path / "a.npz", "Thing") as archive:
        assert archive.scalar("n", int) == 2**40
        with pytest.raises(FileFormatError, match=r"n is 1099511627776, expected a value in"):
            archive.scalar("n", int, low=0, high=2**31)


def test_a_plain_npy_file_is_refused(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(3))
    with pytest.raises(FileFormatError, match="a.npy"):
        load_arrays(tmp_path / "a.npy", "Thing", {"x": ("int64", (3,))})


def test_missing_file_stays_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_arrays(tmp_path / "nothing.npz", "Thing", {})


def _member_offsets(data: bytes, name: str) -> tuple[int, int]:
    """Where member ``name``'s .npy bytes start and end in an uncompressed archive."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = zf.getinfo(name + ".npy")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    return start, start + info.file_size


def _craft(path, members: dict[str, bytes]) -> None:
    """An archive whose members are raw bytes (valid zip, correct CRCs, lying contents)."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name + ".npy", data)


def _npy(value) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(value))
    return buf.getvalue()


def _npy_header(descr: str, shape: tuple) -> bytes:
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header


@pytest.mark.parametrize("shape", [(2**40,), (2**20, 2**20), (2**62, 4)])
def test_a_header_claiming_a_huge_shape_is_refused_before_allocating(tmp_path, shape):
    path = tmp_path / "a.npz"
    _craft(path, {"__kind__": _npy("Thing"), "__version__": _npy(1),
                  "x": _npy_header("<i8", shape) + bytes(32)})
    started = time.perf_counter()
    with pytest.raises(FileFormatError, match=r"x declares .* but the archive holds 32"):
        load_arrays(path, "Thing", {"x": ("int64", (None,) * len(shape))})
    assert time.perf_counter() - started < 1.0


def test_a_directory_entry_claiming_huge_sizes_is_refused(tmp_path):
    path = tmp_path / "a.npz"
    save_arrays(path, "Thing", x=np.arange(4, dtype=np.int64))
    data = bytearray(path.read_bytes())
    # Patch the central directory's sizes of member x to 2**31 bytes.
    entry = data.index(b"PK\x01\x02")
    while True:
        name_len = int.from_bytes(data[entry + 28:entry + 30], "little")
        if data[entry + 46:entry + 46 + name_len] == b"x.npy":
            break
        entry = data.index(b"PK\x01\x02", entry + 4)
    data[entry + 20:entry + 28] = (2**31).to_bytes(4, "little") * 2
    path.write_bytes(bytes(data))
    with pytest.raises(FileFormatError):
        load_arrays(path, "Thing", {"x": ("int64", (None,))})


def _good_archive(tmp_path):
    path = tmp_path / "good.npz"
    save_arrays(path, "Thing", x=np.arange(100, dtype=np.int64), y=np.float64(2.5),
                name=np.array("abc"))
    return path


def test_every_truncation_is_a_file_format_error(tmp_path):
    data = _good_archive(tmp_path).read_bytes()
    bad = tmp_path / "cut.npz"
    for length in range(len(data)):
        bad.write_bytes(data[:length])
        with pytest.raises(FileFormatError, match="cut.npz"):
            load_arrays(bad, "Thing", {**SPEC, "x": ("int64", (100,))})


def test_byte_flips_are_refused_or_harmless(tmp_path):
    path = _good_archive(tmp_path)
    data = path.read_bytes()
    spec = {**SPEC, "x": ("int64", (100,))}
    want = load_arrays(path, "Thing", spec)
    rng = np.random.default_rng(0)
    bad = tmp_path / "flipped.npz"
    refused = 0
    for pos in range(len(data)):
        flipped = bytearray(data)
        flipped[pos] ^= 1 << int(rng.integers(8))
        bad.write_bytes(bytes(flipped))
        try:
            got = load_arrays(bad, "Thing", spec)
        except FileFormatError:
            refused += 1
            continue
        # A flip the format cannot notice (zip timestamps, attributes) changes nothing read.
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])
    assert refused > len(data) // 2


@pytest.mark.parametrize("kind", sorted(CLASSES))
@pytest.mark.parametrize("field", ["values", "probabilities", "noise", "prob", "alias", "power",
                                   "alpha", "beta", "max_priority"])
def test_class_load_never_unpickles(tmp_path, kind, field):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.npz"
    np.savez(path, __kind__=np.array(kind), __version__=np.array(1),
             **{field: np.array([_RunsCodeWhenUnpickled(marker)], dtype=object)})
    with pytest.raises(ValueError):
        LOADERS[kind](path)
    assert not marker.exists()


@pytest.mark.parametrize("writer", sorted(CLASSES))
@pytest.mark.parametrize("reader", sorted(CLASSES))
def test_file_of_another_class_is_refused(tmp_path, writer, reader):
    path = tmp_path / "obj.npz"
    CLASSES[writer]().save(path)
    if writer == reader:
        assert type(LOADERS[reader](path)).__name__ == reader
    else:
        with pytest.raises(ValueError, match=writer):
            LOADERS[reader](path)


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_plain_npz_is_refused_by_every_class(tmp_path, kind):
    np.savez(tmp_path / "x.npz", values=np.ones(3))
    with pytest.raises(ValueError, match="foreign"):
        LOADERS[kind](tmp_path / "x.npz")


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_save_accepts_str_paths_and_pickle_works(tmp_path, kind):
    obj = CLASSES[kind]()
    obj.save(str(tmp_path / "s.npz"))
    assert type(LOADERS[kind](str(tmp_path / "s.npz"))) is type(obj)
    assert type(pickle.loads(pickle.dumps(obj))) is type(obj)


GOOD_FIELDS = {
    "SumTree": dict(values=[1.0, 0.0, 2.0]),
    "PrioritizedSampler": dict(values=[1.0, 0.0, 2.0], alpha=0.6, beta=0.4, max_priority=3.0),
    # Vose's table for [1, 0, 3]: rows 0 and 1 fall back to id 2.
    "AliasSampler": dict(probabilities=[0.25, 0.0, 0.75], prob=[0.75, 0.0, 1.0], alias=[2, 2, 2]),
    "NegativeSampler": dict(noise=[1.0, 0.0, 3.0], power=0.75),
}
TAMPERED = [
    ("SumTree", "values", [1.0, np.nan, 2.0]), ("SumTree", "values", [1.0, -1.0, 2.0]),
    ("SumTree", "values", [1e308, 1e308, 1.0]), ("SumTree", "values", [[1.0, 2.0]]),
    ("PrioritizedSampler", "values", [1.0, np.inf, 2.0]), ("PrioritizedSampler", "alpha", -1.0),
    ("PrioritizedSampler", "beta", 2.0), ("PrioritizedSampler", "max_priority", np.nan),
    ("PrioritizedSampler", "max_priority", -1.0),
    ("AliasSampler", "alias", [0, 7, 2]), ("AliasSampler", "alias", [0, -3, 2]),
    ("AliasSampler", "prob", [1.0, np.nan, 1.0]), ("AliasSampler", "prob", [1.5, 0.0, 1.0]),
    ("AliasSampler", "prob", [1.0, 0.0]), ("AliasSampler", "probabilities", [0.25, -0.1, 0.75]),
    ("AliasSampler", "prob", [1.0, 0.5, 1.0]),  # row 1 would draw id 1, of probability 0
    ("AliasSampler", "alias", [2, 1, 2]),  # row 1 falls back to id 1, of probability 0
    ("NegativeSampler", "noise", [1.0, -2.0, 3.0]), ("NegativeSampler", "noise", [0.0, 0.0, 0.0]),
    ("NegativeSampler", "power", np.nan), ("NegativeSampler", "power", -1.0),
]


def test_untampered_files_load(tmp_path):
    for kind, fields in GOOD_FIELDS.items():
        save_arrays(tmp_path / f"{kind}.npz", kind, **fields)
        assert type(LOADERS[kind](tmp_path / f"{kind}.npz")).__name__ == kind
    alias = LOADERS["AliasSampler"](tmp_path / "AliasSampler.npz")
    # 40 000 draws: the count of id 0 is Binomial(40000, 1/4), sd ~87; 6 sd is a ~1e-9 false alarm.
    draws = alias.sample(40_000, rng=0)
    assert not (draws == 1).any() and abs((draws == 0).sum() - 10_000) < 520


@pytest.mark.parametrize("kind, field, value", TAMPERED)
def test_tampered_files_are_refused(tmp_path, kind, field, value):
    # A file is data from outside: a value the constructor would refuse, or a
    # table that could draw an invalid or zero-probability id, must not load.
    save_arrays(tmp_path / "bad.npz", kind, **{**GOOD_FIELDS[kind], field: value})
    with pytest.raises(ValueError):
        LOADERS[kind](tmp_path / "bad.npz")
