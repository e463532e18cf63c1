"""SkipGram: quality on a block-model graph, loss, reproducibility, formats, bad input."""

import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from dlkernels.embed import SkipGram
from dlkernels.embed import _corpus
from dlkernels.embed._synthetic import sbm_adjacency, uniform_walks

# Small but clearly separable: 5 blocks of 60 nodes, expected degree 12 inside
# the block and 1 outside.
N_NODES, N_BLOCKS = 300, 5


@pytest.fixture(scope="module")
def sbm():
    neighbours, blocks = sbm_adjacency(N_NODES, N_BLOCKS, p_in=0.2, p_out=0.004, seed=1)
    walks = uniform_walks(neighbours, walk_length=40, walks_per_node=6, seed=2)
    return walks, blocks


def block_accuracy(vectors, blocks) -> float:
    pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    return float(cross_val_score(LogisticRegression(max_iter=2000), vectors, blocks, cv=5).mean())


def state(model: SkipGram) -> dict:
    """Everything observable about a model, for before/after comparisons."""
    out = {"repr": repr(model), "rng": model.rng, "n_threads": model.n_threads}
    if model._fitted is not None:
        out.update({k: np.array(v, copy=True) for k, v in model._fitted.items()})
    return out


def assert_same_state(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# -- quality ------------------------------------------------------------------------
@pytest.mark.parametrize("hs, negative", [(False, 5), (True, 0)], ids=["ns", "hs"])
def test_sbm_blocks_classified(sbm, hs, negative):
    walks, blocks = sbm
    model = SkipGram(dim=32, window=5, n_negatives=negative, hs=hs, epochs=2, rng=0,
                     n_threads=2).fit(walks)
    assert model.vectors.shape == (N_NODES, 32) and model.vectors.dtype == np.float32
    assert block_accuracy(model.vectors, blocks) >= 0.9


@pytest.mark.parametrize("hs, negative", [(False, 5), (True, 0), (True, 3)], ids=["ns", "hs", "both"])
def test_loss_falls(sbm, hs, negative):
    walks, _ = sbm
    model = SkipGram(dim=16, window=3, n_negatives=negative, hs=hs, epochs=4, rng=0,
                     n_threads=1).fit(walks)
    history = model.loss_history
    assert history.shape == (4,) and np.isfinite(history).all()
    assert np.all(np.diff(history) < 0), history
    # Falling by more than noise: the hierarchical softmax's floor (a code of about
    # log2(300) bits to predict) keeps it from falling as far as negative sampling's.
    assert history[-1] < 0.9 * history[0]


def test_random_vectors_do_not_classify(sbm):
    # The accuracy test can fail: untrained (one tiny learning rate) vectors are at chance.
    walks, blocks = sbm
    model = SkipGram(dim=16, alpha=1e-9, min_alpha=0.0, rng=0, n_threads=1).fit(walks)
    assert block_accuracy(model.vectors, blocks) < 0.5


def test_most_similar_matches_brute_force(sbm):
    walks, blocks = sbm
    model = SkipGram(dim=16, epochs=1, rng=0, n_threads=1).fit(walks)
    v = model.vectors.astype(np.float64)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    for node in (0, 77, N_NODES - 1):
        ids, sims = model.most_similar(node, k=7)
        expected = [i for i in np.argsort(-(v @ v[node]), kind="stable") if i != node][:7]
        np.testing.assert_array_equal(ids, expected)
        np.testing.assert_allclose(sims, (v @ v[node])[expected], rtol=1e-6)
        # Same-block neighbours dominate.
        assert np.mean(blocks[ids] == blocks[node]) >= 0.7
    ids, _ = model.most_similar(3, k=10**6)
    assert sorted(ids.tolist()) == [i for i in range(N_NODES) if i != 3]


# -- determinism ----------------------------------------------------------------------
def test_reproducible_on_one_thread(sbm):
    walks, _ = sbm
    a = SkipGram(dim=16, n_negatives=3, hs=True, epochs=2, rng=5, n_threads=1).fit(walks)
    b = SkipGram(dim=16, n_negatives=3, hs=True, epochs=2, rng=5, n_threads=1).fit(walks)
    np.testing.assert_array_equal(a.vectors, b.vectors)
    np.testing.assert_array_equal(a.loss_history, b.loss_history)
    c = SkipGram(dim=16, n_negatives=3, hs=True, epochs=2, rng=6, n_threads=1).fit(walks)
    assert not np.array_equal(a.vectors, c.vectors)


def test_same_draws_at_any_thread_count(sbm):
    # Subsampling, windows and negatives come from per-chunk streams: the kept
    # words are identical, and the hogwild result differs only by update order.
    walks = np.tile(sbm[0], (4, 1))  # several chunks, so threads really share work
    results = [SkipGram(dim=16, epochs=1, sample=1e-3, rng=3, n_threads=t).fit(walks)
               for t in (1, 2, 4)]
    assert len({m.trained_words for m in results}) == 1
    assert results[0].trained_words < np.count_nonzero(walks >= 0)  # some were subsampled
    for m in results[1:]:
        np.testing.assert_allclose(m.loss_history, results[0].loss_history, rtol=1e-2)


def test_generator_rng_advances(sbm):
    walks, _ = sbm
    gen = np.random.default_rng(0)
    model = SkipGram(dim=8, rng=gen, n_threads=1)
    first = model.fit(walks).vectors.copy()
    assert not np.array_equal(first, model.fit(walks).vectors)


# -- input forms ---------------------------------------------------------------------
def split_reference(sequences):
    """Sentences as lists, breaking at -1, dropping empties (the obvious way)."""
    out = []
    for seq in sequences:
        current = []
        for x in list(seq) + [-1]:
            if x == -1:
                if current:
                    out.append(current)
                current = []
            else:
                current.append(int(x))
    return out


def sentences_of(corpus, vocab_size=None):
    """Every sentence the corpus's training batches hold, and the chunk starts."""
    summary = corpus.scan(vocab_size)
    sentences, chunk_starts = [], []
    next_chunk = 0
    for batch in corpus.batches(summary):
        assert batch.first_chunk == next_chunk and batch.offsets[0] == 0
        next_chunk += batch.n_chunks
        base = len(sentences)
        sentences += [batch.tokens[a:b].tolist()
                      for a, b in zip(batch.offsets[:-1], batch.offsets[1:])]
        chunk_starts += (base + batch.bounds[:-1]).tolist()
        assert batch.bounds[-1] == batch.offsets.size - 1
    assert next_chunk == summary.n_chunks
    return sentences, chunk_starts, summary


@pytest.mark.parametrize("sequences", [
    np.array([[0, 1, 2, -1, -1], [3, -1, 4, 5, -1], [-1, -1, -1, -1, -1], [6, 6, 6, 6, 6]]),
    [np.array([0, 1]), np.array([], dtype=np.int64), [2, -1, 3, 3], np.array([4], dtype=np.uint8)],
    [np.array([[0, 1, -1], [2, 2, 2]]), np.array([3, 4]), np.zeros((0, 5), dtype=np.int32)],
])
def test_split_matches_reference(sequences):
    reference = []
    for part in sequences:
        part = np.asarray(part)
        reference += split_reference(part if part.ndim == 2 else [part])
    sentences, _, summary = sentences_of(_corpus.Corpus(sequences))
    assert sentences == reference
    assert summary.counts.size == max(max(s) for s in reference) + 1
    np.testing.assert_array_equal(summary.counts, np.bincount(sum(reference, [])))


def test_chunks_do_not_depend_on_parts_or_batches(monkeypatch):
    # Chunks (the random streams) follow the global position of each sentence:
    # one array, many parts and tiny batches must give the same chunks.
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 3000, 400)
    rows = np.full((lengths.size, lengths.max()), -1)
    for r, n in enumerate(lengths):
        rows[r, :n] = rng.integers(0, 50, n)
    whole, starts, summary = sentences_of(_corpus.Corpus(rows))
    offsets = np.r_[0, np.cumsum(lengths)]
    chunk_of = offsets[:-1] // _corpus.CHUNK_WORDS
    assert starts == np.flatnonzero(np.diff(chunk_of, prepend=-1)).tolist()
    assert summary.n_chunks == len(starts) and summary.n_tokens == lengths.sum()
    monkeypatch.setattr(_corpus, "BATCH_TOKENS", 5000)
    monkeypatch.setattr(_corpus, "PIECE_CELLS", 7000)
    parts = [rows[:7], rows[7:8], rows[8:200], *list(rows[200:250]), rows[250:]]
    assert sentences_of(_corpus.Corpus(parts))[:2] == (whole, starts)


def test_shards_equal_one_array(tmp_path, sbm):
    walks, _ = sbm
    for i, block in enumerate(np.array_split(walks, 7)):
        np.save(tmp_path / f"walks-{i:03d}.npy", block.astype(np.int32))
    (tmp_path / "notes.txt").write_text("not a shard")
    one = SkipGram(dim=8, n_negatives=2, hs=True, epochs=2, rng=3, n_threads=1).fit(walks)
    for source in (tmp_path, str(tmp_path), np.array_split(walks, 3)):
        other = SkipGram(dim=8, n_negatives=2, hs=True, epochs=2, rng=3, n_threads=1).fit(source)
        np.testing.assert_array_equal(other.vectors, one.vectors)
        np.testing.assert_array_equal(other.loss_history, one.loss_history)


def test_format_1_files_load_and_training_is_unchanged():
    # Files written before n_negatives was renamed (their member is still
    # "negative"), and vectors trained then: the same training gives them now.
    data = Path(__file__).parent / "data"
    loaded = SkipGram.load(data / "skipgram_format1.npz")
    assert loaded.n_negatives == 3 and loaded.hs
    old = np.load(data / "skipgram_format1_vectors.npy")
    np.testing.assert_array_equal(loaded.vectors, old)
    walks = np.array([[0, 1, 2, 3, 2, 1], [4, 5, 4, 3, 2, -1]] * 10)
    again = SkipGram(dim=4, window=2, n_negatives=3, hs=True, epochs=2, rng=0,
                     n_threads=1).fit(walks)
    np.testing.assert_array_equal(again.vectors, old)


def test_iterable_and_array_agree(sbm):
    walks, _ = sbm
    a = SkipGram(dim=8, rng=1, n_threads=1).fit(walks)
    b = SkipGram(dim=8, rng=1, n_threads=1).fit(list(walks))
    c = SkipGram(dim=8, rng=1, n_threads=1).fit(row for row in walks.astype(np.int32))
    np.testing.assert_array_equal(a.vectors, b.vectors)
    np.testing.assert_array_equal(a.vectors, c.vectors)


def test_torch_tensor_input(sbm):
    torch = pytest.importorskip("torch")
    walks, _ = sbm
    a = SkipGram(dim=8, rng=1, n_threads=1).fit(walks)
    b = SkipGram(dim=8, rng=1, n_threads=1).fit(torch.from_numpy(walks))
    np.testing.assert_array_equal(a.vectors, b.vectors)


def test_vocab_size_and_unseen_ids():
    walks = np.array([[0, 1, 0, 1, 0, 1]] * 20)
    model = SkipGram(dim=8, sample=0, rng=0, n_threads=1).fit(walks, vocab_size=4)
    assert model.vectors.shape == (4, 8)
    np.testing.assert_array_equal(model.counts, [60, 60, 0, 0])
    # Unseen ids keep word2vec's initial vectors, uniform in +-0.5/dim.
    assert np.abs(model.vectors[2:]).max() <= 0.5 / 8


def test_blocks_wider_than_the_kernel_block():
    # 2 * window > 64 context rows and negative + 1 > 64 output rows: the kernel
    # trains each centre word as several blocks (a Huffman code that long would
    # need counts beyond 2**45, so hs runs alongside at its normal depth).
    rng = np.random.default_rng(0)
    walks = rng.zipf(1.5, size=(40, 100)) % 50
    model = SkipGram(dim=8, window=40, n_negatives=70, hs=True, epochs=2, rng=0,
                     n_threads=2).fit(walks)
    assert np.isfinite(model.vectors).all() and np.isfinite(model.loss_history).all()
    assert model.loss_history[1] < model.loss_history[0]


# -- formats -------------------------------------------------------------------------
def parse_word2vec_text(path):
    with open(path, encoding="utf-8") as f:
        n, dim = map(int, f.readline().split())
        words, rows = [], []
        for line in f:
            parts = line.rstrip("\n").split(" ")
            words.append(parts[0])
            rows.append([float(x) for x in parts[1:]])
    assert len(words) == n and all(len(r) == dim for r in rows)
    return words, np.array(rows, dtype=np.float32)


def test_word2vec_text_format(sbm, tmp_path):
    model = SkipGram(dim=12, rng=0, n_threads=1).fit(sbm[0])
    path = tmp_path / "emb.txt"
    model.save_word2vec_format(path)
    words, rows = parse_word2vec_text(path)
    assert words == [str(i) for i in range(N_NODES)]
    np.testing.assert_array_equal(rows, model.vectors)  # 9 digits: float32-exact
    names = [f"node_{i}" for i in range(N_NODES)]
    model.save_word2vec_format(path, words=names)
    assert parse_word2vec_text(path)[0] == names


def test_word2vec_text_read_by_gensim(sbm, tmp_path):
    gensim_models = pytest.importorskip("gensim.models")
    model = SkipGram(dim=12, rng=0, n_threads=1).fit(sbm[0])
    path = tmp_path / "emb.txt"
    model.save_word2vec_format(path)
    kv = gensim_models.KeyedVectors.load_word2vec_format(str(path), binary=False)
    np.testing.assert_array_equal(kv[[str(i) for i in range(N_NODES)]], model.vectors)


def test_save_load_and_pickle(sbm, tmp_path):
    model = SkipGram(dim=12, n_negatives=2, hs=True, epochs=2, rng=0, n_threads=1).fit(sbm[0])
    model.save(tmp_path / "m.npz")
    loaded = SkipGram.load(tmp_path / "m.npz")
    for m in (loaded, pickle.loads(pickle.dumps(model))):
        assert repr(m) == repr(model)
        for key, value in model._fitted.items():
            np.testing.assert_array_equal(m._fitted[key], value, err_msg=key)
        np.testing.assert_array_equal(m.most_similar(4)[0], model.most_similar(4)[0])


def test_load_refuses_other_archives(tmp_path):
    from dlkernels._lib.persist import save_arrays

    save_arrays(tmp_path / "a.npz", "AliasSampler", x=np.zeros(2))
    with pytest.raises(ValueError, match="AliasSampler"):
        SkipGram.load(tmp_path / "a.npz")
    save_arrays(tmp_path / "b.npz", "SkipGram", dim=4)
    with pytest.raises(ValueError, match="SkipGram file that lacks"):
        SkipGram.load(tmp_path / "b.npz")


# -- bad input ------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, exc, name", [
    ({"dim": 0}, ValueError, "dim"), ({"dim": 2.0}, TypeError, "dim"),
    ({"window": 0}, ValueError, "window"), ({"n_negatives": 0}, ValueError, "n_negatives"),
    ({"n_negatives": -1, "hs": True}, ValueError, "n_negatives"), ({"epochs": 0}, ValueError, "epochs"),
    ({"alpha": 0.0}, ValueError, "alpha"), ({"alpha": -1.0}, ValueError, "alpha"),
    ({"alpha": float("nan")}, ValueError, "alpha"), ({"min_alpha": 0.5}, ValueError, "min_alpha"),
    ({"sample": -1e-3}, ValueError, "sample"), ({"hs": 1}, TypeError, "hs"),
    ({"n_threads": 0}, ValueError, "n_threads"), ({"rng": "x"}, TypeError, "rng"),
])
def test_bad_parameters(kwargs, exc, name):
    with pytest.raises(exc, match=re.escape(name)):
        SkipGram(**kwargs)


def test_negative_zero_allowed_with_hs():
    assert SkipGram(n_negatives=0, hs=True).n_negatives == 0


@pytest.mark.parametrize("sequences, vocab_size, exc, pattern", [
    (np.array([[0, 1, 5]]), 5, ValueError, "vocab_size=5, got 5"),
    (np.array([[0, 1, -2]]), None, ValueError, "got -2"),
    ([np.array([0, 1]), np.array([3, -7])], None, ValueError, "got -7"),
    (np.array([[0], [1]]), None, ValueError, "nothing to train on"),
    (np.array([[-1, -1]]), None, ValueError, "nothing to train on"),
    ([], None, ValueError, "nothing to train on"),
    (np.array([[0.0, 1.0]]), None, TypeError, "sequences"),
    (np.array([[True, False]]), None, TypeError, "sequences"),
    (np.array([0, 1, 2]), None, ValueError, "2-dimensional"),
    ([np.zeros((2, 2, 2), dtype=int)], None, ValueError, "sequences[0]"),
    (["ab"], None, TypeError, "sequences[0]"),
    ("0 1 2", None, ValueError, "not a directory"),
    (b"0 1 2", None, TypeError, "sequences"),
    (5, None, TypeError, "sequences"),
    (np.array([[0, 1]]), 0, ValueError, "vocab_size"),
    (np.array([[0, 1]]), 2.5, TypeError, "vocab_size"),
    (np.array([[0, 2**40]], dtype=np.uint64), None, ValueError, "largest supported id"),
])
def test_bad_sequences_leave_model_unchanged(sbm, sequences, vocab_size, exc, pattern):
    for model in (SkipGram(dim=8, rng=0, n_threads=1),
                  SkipGram(dim=8, rng=0, n_threads=1).fit(sbm[0])):
        before = state(model)
        with pytest.raises(exc, match=re.escape(pattern)):
            model.fit(sequences, vocab_size=vocab_size)
        assert_same_state(state(model), before)


def test_unfitted_and_bad_queries(sbm, tmp_path):
    model = SkipGram(dim=8)
    for call in (lambda: model.vectors, lambda: model.most_similar(0),
                 lambda: model.save(tmp_path / "x"), lambda: model.save_word2vec_format(tmp_path / "x")):
        with pytest.raises(ValueError, match="not fitted"):
            call()
    model = SkipGram(dim=8, rng=0, n_threads=1).fit(sbm[0])
    before = state(model)
    for call, exc, name in [
        (lambda: model.most_similar(N_NODES), ValueError, "id"),
        (lambda: model.most_similar(-1), ValueError, "id"),
        (lambda: model.most_similar(0, k=0), ValueError, "k"),
        (lambda: model.save_word2vec_format(tmp_path / "x", words=["a"]), ValueError, "words"),
        (lambda: model.save_word2vec_format(tmp_path / "x", words=["a b"] * N_NODES), ValueError, "words"),
        (lambda: model.fit(sbm[0], progress="yes"), TypeError, "progress"),
    ]:
        with pytest.raises(exc, match=name):
            call()
    assert_same_state(state(model), before)


def test_progress_bar(sbm, capsys):
    pytest.importorskip("tqdm")
    SkipGram(dim=8, rng=0, n_threads=1).fit(sbm[0], progress=True)
    assert "SkipGram" in capsys.readouterr().err
    SkipGram(dim=8, rng=0, n_threads=1).fit(sbm[0])
    assert capsys.readouterr().err == ""


# -- peer ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_as_good_as_gensim_on_larger_sbm():
    gensim_models = pytest.importorskip("gensim.models")
    neighbours, blocks = sbm_adjacency(1000, 5, p_in=0.05, p_out=0.0025, seed=3)
    walks = uniform_walks(neighbours, walk_length=80, walks_per_node=10, seed=4)
    ours = SkipGram(dim=64, window=5, n_negatives=5, rng=0, n_threads=2).fit(walks)
    peer = gensim_models.Word2Vec([[str(x) for x in w[w >= 0]] for w in walks], vector_size=64,
                                  window=5, negative=5, sg=1, min_count=1, workers=2, seed=0)
    theirs = np.array([peer.wv[str(i)] for i in range(1000)])
    assert block_accuracy(ours.vectors, blocks) >= block_accuracy(theirs, blocks) - 0.01
