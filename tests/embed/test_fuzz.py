"""Hypothesis: random valid sequences train (and agree with a model of the
corpus split); random broken ones raise an error naming the argument, and the
model is left as it was."""

import re

import hypothesis.extra.numpy as hnp
import numpy as np
from hypothesis import given, strategies as st

from dlkernels.embed import SkipGram

ids = st.integers(-1, 30)
sequence_lists = st.lists(st.lists(ids, max_size=12).map(lambda s: np.array(s, dtype=np.int64)),
                          max_size=8)
arrays = hnp.arrays(np.int64, st.tuples(st.integers(0, 6), st.integers(0, 12)), elements=ids)


def trainable(seqs) -> bool:
    """Some run of two or more ids between -1 paddings."""
    for seq in seqs:
        run = 0
        for x in list(seq):
            run = run + 1 if x >= 0 else 0
            if run >= 2:
                return True
    return False


@given(seqs=st.one_of(sequence_lists, arrays), dim=st.integers(1, 9), window=st.integers(1, 6),
       hs=st.booleans(), negative=st.integers(1, 4))
def test_valid_or_nothing_to_train(seqs, dim, window, hs, negative):
    model = SkipGram(dim=dim, window=window, hs=hs, n_negatives=negative, rng=0, n_threads=2)
    if not trainable(seqs):
        try:
            model.fit(seqs)
        except ValueError as exc:
            assert "nothing to train on" in str(exc)
        else:
            raise AssertionError("fit accepted sequences with nothing to train on")
        assert model._fitted is None
        return
    model.fit(seqs)
    largest = max(int(np.max(s)) for s in seqs if len(s))
    assert model.vectors.shape == (largest + 1, dim)
    assert np.isfinite(model.vectors).all() and np.isfinite(model.loss_history).all()
    counts = np.bincount(np.concatenate([np.asarray(s)[np.asarray(s) >= 0] for s in seqs]),
                         minlength=largest + 1)
    np.testing.assert_array_equal(model.counts, counts)


@given(data=st.data(), arr=hnp.arrays(np.int64, st.tuples(st.integers(1, 5), st.integers(2, 10)),
                                      elements=st.integers(0, 20)))
def test_broken_sequences(data, arr):
    model = SkipGram(dim=4, rng=0, n_threads=1).fit(np.array([[0, 1, 2, 3]] * 5))
    before = model.vectors.copy()
    kind = data.draw(st.sampled_from(["high", "low", "float", "vocab"]))
    pos = (data.draw(st.integers(0, arr.shape[0] - 1)), data.draw(st.integers(0, arr.shape[1] - 1)))
    vocab_size = None
    if kind == "high":
        vocab_size = int(arr.max()) + 1
        arr[pos] = vocab_size + data.draw(st.integers(0, 10**9))
        exc, pattern = ValueError, f"vocab_size={vocab_size}"
    elif kind == "low":
        arr[pos] = -data.draw(st.integers(2, 10**12))
        exc, pattern = ValueError, f"got {arr[pos]}"
    elif kind == "float":
        arr = arr.astype(np.float64)
        exc, pattern = TypeError, "sequences"
    else:
        vocab_size = -data.draw(st.integers(0, 5))
        exc, pattern = ValueError, "vocab_size"
    try:
        model.fit(arr, vocab_size=vocab_size)
    except exc as err:
        assert re.search(re.escape(pattern), str(err)), str(err)
    else:
        raise AssertionError(f"{kind}: no error")
    np.testing.assert_array_equal(model.vectors, before)
