"""dlkernels._lib.persist and every class's save/load: npz archives, never pickle."""

import builtins
import pickle

import numpy as np
import pytest

from dlkernels._lib.persist import FORMAT_VERSION, load_arrays, save_arrays
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


def test_round_trip(tmp_path):
    path = tmp_path / "a.npz"
    save_arrays(path, "Thing", x=[1, 2, 3], y=2.5, name=np.array("abc"))
    got = load_arrays(str(path), "Thing")
    assert set(got) == {"x", "y", "name"}
    np.testing.assert_array_equal(got["x"], [1, 2, 3])
    assert float(got["y"]) == 2.5 and str(got["name"]) == "abc"


def test_other_kind_is_refused(tmp_path):
    save_arrays(tmp_path / "a.npz", "Thing", x=[1])
    with pytest.raises(ValueError, match="not a Other"):
        load_arrays(tmp_path / "a.npz", "Other")


def test_foreign_archive_is_refused(tmp_path):
    np.savez(tmp_path / "a.npz", x=np.arange(3))
    with pytest.raises(ValueError, match="foreign"):
        load_arrays(tmp_path / "a.npz", "Thing")


def test_newer_format_is_refused(tmp_path):
    np.savez(tmp_path / "a.npz", __kind__=np.array("Thing"),
             __version__=np.array(FORMAT_VERSION + 1), x=np.arange(3))
    with pytest.raises(ValueError, match="newer"):
        load_arrays(tmp_path / "a.npz", "Thing")


def test_object_arrays_are_never_unpickled(tmp_path):
    marker = tmp_path / "ran"
    payload = np.array([_RunsCodeWhenUnpickled(marker)], dtype=object)
    np.savez(tmp_path / "a.npz", __kind__=np.array("Thing"), __version__=np.array(1), x=payload)
    # The crafted file really does run code when pickles are allowed:
    with np.load(tmp_path / "a.npz", allow_pickle=True) as archive:
        archive["x"]
    assert marker.exists()
    marker.unlink()
    with pytest.raises(ValueError, match="allow_pickle"):
        load_arrays(tmp_path / "a.npz", "Thing")
    assert not marker.exists()


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
