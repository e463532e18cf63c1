"""SkipGram at extreme values: every float that reaches the float32 kernel is bounded,
the sigmoid tables are never indexed with a NaN, and diverged training is refused."""

import io
import re
import zipfile

import numpy as np
import pytest

from dlkernels import FileFormatError
from dlkernels.embed import SkipGram

TINY = np.array([[0, 1, 2, 1, 0]] * 20)


@pytest.mark.parametrize("hs", [False, True])
def test_alpha_beyond_float32_is_refused_by_name(hs):
    with pytest.raises(ValueError, match="alpha must be <= 3.40"):
        SkipGram(dim=4, alpha=1e39, rng=0, n_threads=1, hs=hs)


@pytest.mark.parametrize("hs", [False, True])
@pytest.mark.parametrize("alpha", [1e30, 3.4e38])
def test_diverging_training_is_refused_and_leaves_the_model(hs, alpha):
    model = SkipGram(dim=4, alpha=alpha, rng=0, n_threads=1, hs=hs)
    with pytest.raises(ValueError, match=r"diverged.*alpha=.* too large"):
        model.fit(TINY)
    assert model._fitted is None
    good = SkipGram(dim=4, rng=0, n_threads=1, hs=hs).fit(TINY)
    before = good.vectors.copy()
    good.alpha = alpha  # as if it had been built with it: fit refuses, keeps the old vectors
    with pytest.raises(ValueError, match="diverged"):
        good.fit(TINY)
    np.testing.assert_array_equal(good.vectors, before)


def test_kernel_survives_nan_rows(run_python):
    # The kernel itself, fed NaN vectors: before the fix the NaN dot product
    # became a sigmoid-table index far out of bounds (a segfault). A child
    # process, so that a crash fails this test instead of killing the suite.
    code = """
import numpy as np
from dlkernels.embed import _skipgram
from dlkernels.sampling import NegativeSampler
v, d = 3, 4
syn0 = np.full((v, d), np.nan, dtype=np.float32)
syn1neg = np.zeros((v, d), dtype=np.float32)
syn1 = np.zeros((2, d), dtype=np.float32)
tokens = np.array([0, 1, 2, 1, 0], dtype=np.int32)
table = NegativeSampler(np.ones(v)).alias_table
loss, pairs, words = np.zeros(1), np.zeros(1, np.int64), np.zeros(1, np.int64)
for hs in (False, True):
    _skipgram.train(syn0, syn1neg, syn1, tokens, np.array([0, 5]), np.array([0, 1]), 0, 1,
                    np.ones(v, np.float32), table, np.array([[0], [1], [1]], np.int32),
                    np.array([[1.0], [0.0], [1.0]], np.float32), np.array([1, 1, 1], np.int32)
                    if hs else np.zeros(v, np.int32), 2, 2, hs, 0.025, 0.0001, 0.0, 5.0, 5,
                    1, 0, loss, pairs, words, 1)
    print("loss", loss[0], "pairs", pairs[0])
"""
    proc = run_python("-c", code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("loss nan") == 2


@pytest.mark.parametrize("name", ["n_negatives", "window", "dim", "epochs"])
@pytest.mark.parametrize("value", [2**40, 2**63, 2**64])
def test_huge_integers_are_value_errors_naming_the_argument(name, value):
    with pytest.raises(ValueError, match=rf"{name} must be at most \d+, got {value}"):
        SkipGram(**{name: value})


def test_sizes_that_cannot_fit_are_refused_before_training():
    with pytest.raises(ValueError, match="vocab_size asks for"):
        SkipGram(dim=2**20, rng=0).fit(TINY, vocab_size=2**31 - 1)
    with pytest.raises(ValueError, match="id 2147483646: its vocabulary asks for"):
        SkipGram(dim=128, rng=0).fit([[0, 2**31 - 2]])


def test_subsampling_at_extreme_thresholds():
    walks = np.tile(np.arange(50), (40, 1))
    kept = {s: SkipGram(dim=4, sample=s, rng=0, n_threads=1).fit(walks).trained_words
            for s in (1e-320, 1e-3, 1e300)}
    # A threshold of 1e-320 keeps about sqrt(t/f) of each word: almost none
    # (the old formula overflowed to "keep everything"); a huge one keeps all.
    assert kept[1e-320] < 10 and kept[1e300] == walks.size
    assert kept[1e-320] < kept[1e-3] <= kept[1e300]


def _rewritten(data: bytes, member: str, value) -> bytes:
    src, buf = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with zipfile.ZipFile(buf, "w") as out:
        for info in src.infolist():
            raw = src.read(info)
            if info.filename == member + ".npy":
                arr = io.BytesIO()
                np.save(arr, np.asarray(value))
                raw = arr.getvalue()
            out.writestr(info.filename, raw)
    return buf.getvalue()


@pytest.mark.parametrize("member, value, message", [
    ("alpha", 1e39, "alpha must be <="), ("min_alpha", 1e39, "min_alpha must be <="),
    ("negative", 2**40, "n_negatives must be at most"), ("window", 2**40, "window must be"),
    ("negative", -3, "n_negatives must be"), ("sample", np.inf, "sample is inf"),
])
def test_load_bounds_every_parameter(tmp_path, member, value, message):
    path = tmp_path / "m.npz"
    SkipGram(dim=4, rng=0, n_threads=1).fit(TINY).save(path)
    path.write_bytes(_rewritten(path.read_bytes(), member, value))
    with pytest.raises(FileFormatError, match=re.escape(str(path)) + ".*" + message):
        SkipGram.load(path)
