"""HierarchicalSoftmax and ClassBasedSoftmax: exact distributions, exact top-k, bad input."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from dlkernels.huffman import huffman_tree  # noqa: E402
from dlkernels.nn import ClassBasedSoftmax, HierarchicalSoftmax  # noqa: E402
from dlkernels.nn.class_based import frequency_clusters  # noqa: E402

D = 6
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def zipf(V):
    return 1.0 / np.arange(1, V + 1)


def make(kind, V, scale=1.0, seed=0, **kw):
    """A layer with N(0, scale) parameters; per-example losses unless told otherwise."""
    kw.setdefault("reduction", "none")
    torch.manual_seed(seed)
    if kind == "huffman":
        m = HierarchicalSoftmax(D, V, counts=zipf(V), **kw)
    elif kind == "balanced":
        m = HierarchicalSoftmax(D, V, **kw)
    elif kind == "classes-counts":
        m = ClassBasedSoftmax(D, V, counts=zipf(V)[::-1].copy(), **kw)
    else:
        m = ClassBasedSoftmax(D, V, **kw)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, scale)
    return m.double()


KINDS = ["huffman", "balanced", "classes-counts", "classes"]


def reference_log_prob(hs: HierarchicalSoftmax, x: torch.Tensor) -> torch.Tensor:
    """Walk each class's path in Python, multiplying the branch probabilities."""
    tree = hs.tree
    w, b = hs.weight.detach(), hs.bias.detach()
    out = torch.empty(x.shape[0], hs.n_classes, dtype=x.dtype)
    for v in range(hs.n_classes):
        total = torch.zeros(x.shape[0], dtype=x.dtype)
        for j in range(tree.lengths[v]):
            node, bit = tree.paths[v, j], tree.bits[v, j]
            z = x @ w[node] + b[node]
            p_right = 1 / (1 + torch.exp(-z))
            total = total + torch.log(p_right if bit == 1 else 1 - p_right)
        out[:, v] = total
    return out


class TestExact:
    @pytest.mark.parametrize("kind", KINDS)
    @pytest.mark.parametrize("V", [2, 3, 17, 300])
    def test_log_prob_sums_to_one_and_matches_forward(self, kind, V, layer_checks):
        layer_checks.normalised_and_forward_is_nll(make(kind, V, scale=2.0), V, D)

    @pytest.mark.parametrize("kind", ["huffman", "balanced"])
    def test_against_path_walk(self, kind):
        hs = make(kind, 37, scale=1.5)
        x = torch.randn(5, D, dtype=torch.float64)
        torch.testing.assert_close(hs.log_prob(x), reference_log_prob(hs, x))

    @pytest.mark.parametrize("kind", KINDS)
    @pytest.mark.parametrize("scale", [0.05, 5.0])   # flat, peaked
    @pytest.mark.parametrize("k", [1, 50])
    def test_predict_is_topk(self, kind, scale, k, layer_checks):
        m = make(kind, 200, scale=scale, seed=k)
        layer_checks.predict_is_topk(m, torch.randn(32, D, dtype=torch.float64), k)

    def test_predict_all_classes(self):
        hs = make("huffman", 30, scale=1.0)
        x = torch.randn(4, D, dtype=torch.float64)
        classes = hs.predict(x, 30)
        assert torch.equal(classes.sort(1).values, torch.arange(30).expand(4, -1))

    def test_predict_opens_few_nodes_when_confident(self, monkeypatch):
        # A peaked model: the search must not touch every node.
        hs = make("balanced", 4096, scale=20.0)
        calls = []
        original = hs._node_logits

        def counting(x, nodes):
            calls.append(nodes.shape[1])
            return original(x, nodes)

        monkeypatch.setattr(hs, "_node_logits", counting)
        hs.predict(torch.randn(3, D, dtype=torch.float64), 1)
        assert sum(calls) < 4095 / 4

    @given(V=st.integers(2, 60), k=st.integers(1, 8), scale=st.floats(0.01, 10),
           seed=st.integers(0, 100), counts=st.booleans())
    def test_predict_fuzz(self, V, k, scale, seed, counts):
        k = min(k, V)
        torch.manual_seed(seed)
        hs = HierarchicalSoftmax(3, V, counts=np.arange(V, 0, -1) if counts else None).double()
        with torch.no_grad():
            hs.weight.normal_(0, scale)
        x = torch.randn(4, 3, dtype=torch.float64)
        values = hs.predict(x, k, return_log_prob=True)[1]
        torch.testing.assert_close(values, hs.log_prob(x).topk(k, 1).values)

    def test_leading_dimensions(self, layer_checks):
        layer_checks.leading_dimensions(make("huffman", 20), 20, D)

    @pytest.mark.parametrize("kind", KINDS)
    def test_gradients_match_full_log_prob(self, kind, layer_checks):
        layer_checks.gradients_match_log_prob(make(kind, 50), 50, D)

    def test_sparse_gradients(self):
        dense, sparse = make("huffman", 40, seed=3), make("huffman", 40, seed=3, sparse=True)
        x = torch.randn(8, D, dtype=torch.float64)
        y = torch.randint(0, 40, (8,))
        dense(x, y).sum().backward()
        sparse(x, y).sum().backward()
        assert sparse.weight.grad.is_sparse
        torch.testing.assert_close(sparse.weight.grad.to_dense(), dense.weight.grad)

    def test_huffman_paths_follow_counts(self):
        counts = zipf(1000)
        hs = HierarchicalSoftmax(4, 1000, counts=counts)
        assert hs.tree == huffman_tree(counts)
        assert hs.paths.shape[1] == hs.tree.max_length
        # Frequent classes get short paths.
        assert hs.tree.lengths[0] < hs.tree.lengths[-1]
        assert HierarchicalSoftmax(4, 1000).tree.lengths.max() == 10

    def test_learns(self):
        # A few steps of SGD lower the loss of a fixed batch.
        torch.manual_seed(0)
        hs = HierarchicalSoftmax(8, 100, counts=zipf(100))
        x, y = torch.randn(64, 8), torch.randint(0, 100, (64,))
        opt = torch.optim.SGD(hs.parameters(), lr=0.5)
        first = hs(x, y).item()
        for _ in range(30):
            opt.zero_grad()
            hs(x, y).backward()
            opt.step()
        assert hs(x, y).item() < 0.7 * first

    @pytest.mark.parametrize("kind", KINDS)
    def test_pickle_and_state_dict(self, kind, tmp_path, layer_checks):
        layer_checks.pickle_and_state_dict(make(kind, 30), make(kind, 30, seed=99),
                                           torch.randn(3, D, dtype=torch.float64), tmp_path)

    def test_float32(self):
        hs = HierarchicalSoftmax(D, 1000, counts=zipf(1000))
        x = torch.randn(4, D)
        lp = hs.log_prob(x)
        assert lp.dtype == torch.float32
        torch.testing.assert_close(lp.exp().sum(1), torch.ones(4))
        assert hs(x, torch.tensor([0, 1, 2, 999])).dtype == torch.float32

    @cuda
    @pytest.mark.gpu
    @pytest.mark.parametrize("kind", KINDS)
    def test_cuda(self, kind):
        m = make(kind, 300, scale=2.0).cuda()
        x = torch.randn(16, D, dtype=torch.float64, device="cuda")
        y = torch.randint(0, 300, (16,), device="cuda")
        lp = m.log_prob(x)
        assert lp.device.type == "cuda"
        torch.testing.assert_close(m(x, y), -lp.gather(1, y[:, None]).squeeze(1))
        torch.testing.assert_close(m.predict(x, 5, return_log_prob=True)[1], lp.topk(5, 1).values)
        m(x, y).sum().backward()


class TestClusters:
    def test_frequency_clusters(self):
        V = 10_000
        counts = zipf(V)
        cluster = frequency_clusters(counts, 100)
        sizes = np.bincount(cluster, minlength=100)
        assert sizes.min() >= 1 and sizes.sum() == V
        assert sizes.max() <= 2.5 * V / 100
        # Sorted by frequency: a more frequent class never sits in a later cluster.
        assert np.all(np.diff(cluster) >= 0)

    @pytest.mark.parametrize("counts", [[5, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0], [1e9, 1, 1, 1, 1, 1]])
    def test_every_cluster_used(self, counts):
        cluster = frequency_clusters(np.asarray(counts, dtype=float), 4)
        assert sorted(set(cluster.tolist())) == [0, 1, 2, 3]

    def test_default_cluster_count(self):
        assert ClassBasedSoftmax(4, 10_000).n_clusters == 100


class TestBadInput:
    @pytest.mark.parametrize("kind", KINDS)
    def test_forward(self, kind):
        m = make(kind, 10)
        x = torch.randn(3, D, dtype=torch.float64)
        before = {k: v.clone() for k, v in m.state_dict().items()}
        with pytest.raises(IndexError, match=r"target must lie in \[0, 10\), got 10 at position 1"):
            m(x, torch.tensor([0, 10, 2]))
        with pytest.raises(IndexError, match="target must lie in .* got -1"):
            m(x, torch.tensor([-1, 0, 2]))
        with pytest.raises(ValueError, match=r"target must have shape \(3,\)"):
            m(x, torch.tensor([0, 1]))
        with pytest.raises(TypeError, match="target must hold integer"):
            m(x, torch.tensor([0.0, 1.0, 2.0]))
        with pytest.raises(ValueError, match=r"input must have shape \(\.\.\., 6\)"):
            m(torch.randn(3, D + 1, dtype=torch.float64), torch.tensor([0, 1, 2]))
        with pytest.raises(TypeError, match="input must be a floating-point tensor"):
            m(torch.ones(3, D, dtype=torch.long), torch.tensor([0, 1, 2]))
        with pytest.raises(TypeError, match="input must be a torch.Tensor"):
            m(np.ones((3, D)), torch.tensor([0, 1, 2]))
        with pytest.raises(ValueError, match="k must be at most n_classes=10, got 11"):
            m.predict(x, 11)
        with pytest.raises(ValueError, match="k must be >= 1, got 0"):
            m.predict(x, 0)
        with pytest.raises(TypeError, match="k must be an int"):
            m.predict(x, 1.5)
        after = m.state_dict()
        for key, value in before.items():
            assert torch.equal(value, after[key]), key

    def test_construction(self):
        with pytest.raises(ValueError, match="counts must have one entry per class"):
            HierarchicalSoftmax(4, 10, counts=np.ones(9))
        with pytest.raises(ValueError, match="n_classes must be >= 2, got 1"):
            HierarchicalSoftmax(4, 1)
        with pytest.raises(ValueError, match="dim must be >= 1, got 0"):
            HierarchicalSoftmax(0, 10)
        with pytest.raises(ValueError, match="counts must be non-negative"):
            HierarchicalSoftmax(4, 3, counts=[1, -1, 2])
        with pytest.raises(ValueError, match="n_clusters must be at most n_classes=10, got 11"):
            ClassBasedSoftmax(4, 10, n_clusters=11)
        with pytest.raises(ValueError, match="counts must have one entry per class"):
            ClassBasedSoftmax(4, 10, counts=np.ones(3))
        with pytest.raises(ValueError, match="counts must be finite"):
            ClassBasedSoftmax(4, 3, counts=[1, math.nan, 2])
