"""prune_units through whole networks: the pruned model equals the masked original.

Each case prunes with ``round_to=1`` and checks, against the brute-force
reference of ``masking.py`` (units ranked from the group members, entries
masked in the original), which units went, every remaining tensor, and the
outputs. The networks are defined in ``shapes.py`` and below.
"""

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from dlkernels.compress import (compression_report, load_compressed, prune_units,  # noqa: E402
                                save_compressed, unit_groups)

from . import shapes  # noqa: E402
from .masking import assert_exact  # noqa: E402


def ready(model, seed=0):
    torch.manual_seed(seed)
    return shapes.randomize_norms(model, seed).eval()


class Custom(nn.Module):
    """A forward of plain torch calls: concatenated branches, a parameter, squeeze-excitation,
    a residual add, and ``view(size(0), -1)`` into the classifier."""

    def __init__(self):
        super().__init__()
        self.stem, self.bn = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.a, self.b = nn.Conv2d(16, 8, 1), nn.Conv2d(16, 8, 3, padding=1)
        self.mix = nn.Conv2d(16, 16, 1)
        self.scale = nn.Parameter(torch.rand(1, 16, 1, 1) + 0.5)
        self.se1, self.se2 = nn.Linear(16, 6), nn.Linear(6, 16)
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        x = F.relu(self.bn(self.stem(x)))
        y = torch.cat([self.a(x), F.relu(self.b(x))], dim=1)
        y = self.mix(y) * self.scale
        w = torch.sigmoid(self.se2(F.relu(self.se1(y.mean((2, 3))))))
        y = y * w[:, :, None, None] + x
        y = F.adaptive_avg_pool2d(y, 4)
        return self.fc(y.view(y.size(0), -1))


def grouped():
    """GroupNorm, a grouped convolution, a depthwise one with 2 outputs per channel, a transposed one."""
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.GroupNorm(4, 16), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, padding=1, groups=4), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.Conv2d(32, 64, 3, padding=1, groups=32), nn.BatchNorm2d(64), nn.ReLU(),
                         nn.ConvTranspose2d(64, 16, 2, stride=2), nn.ReLU(), nn.Conv2d(16, 8, 1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))


class Tied(nn.Module):
    """Embedding, LayerNorm between Linears, and the embedding matrix reused as the output layer."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(30, 16)
        self.fc1, self.ln, self.fc2 = nn.Linear(16, 32), nn.LayerNorm(32), nn.Linear(32, 16)

    def forward(self, tokens):
        h = self.embed(tokens)
        h = h + self.fc2(F.gelu(self.ln(self.fc1(h))))
        return F.linear(h, self.embed.weight)


class Cross(nn.Module):
    """Cross-attention with its own key/value sizes (separate projection weights)."""

    def __init__(self):
        super().__init__()
        self.q, self.kv = nn.Linear(8, 16), nn.Linear(6, 12)
        self.attn = nn.MultiheadAttention(16, 4, kdim=12, vdim=12, batch_first=True)
        self.out = nn.Linear(16, 3)

    def forward(self, x, memory):
        q, kv = self.q(x), self.kv(memory)
        a, _ = self.attn(q, kv, kv)
        return self.out(a + q).mean(1)


class EncoderDecoder(nn.Module):
    """torch's encoder (pre-norm) and decoder layers: self- and cross-attention, all traced by rules."""

    def __init__(self):
        super().__init__()
        self.src, self.tgt = nn.Linear(6, 16), nn.Linear(5, 16)
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(16, 2, 24, dropout=0.0, batch_first=True, norm_first=True), 1,
            norm=nn.LayerNorm(16), enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoderLayer(16, 2, 24, dropout=0.0, batch_first=True,
                                                  activation="gelu")
        self.head = nn.Linear(16, 3)

    def forward(self, src, tgt):
        return self.head(self.decoder(self.tgt(tgt), self.encoder(self.src(src))))


class Branchy(nn.Module):
    """Python control flow on a shape: fx cannot follow it, torch.export can."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv1d(4, 16, 3), nn.Conv1d(16, 16, 3)
        self.head = nn.Linear(16, 2)

    def forward(self, x):
        if x.dim() == 2:
            x = x.unsqueeze(0)
        h = F.relu(self.conv1(x))
        return self.head(F.relu(self.conv2(h)).amax(2))


CASES = {
    "mlp": (lambda: shapes.mlp((20, 24, 16, 4)), lambda: torch.randn(5, 20)),
    "cnn": (lambda: shapes.cnn((3, 8, 16, 16)), lambda: torch.randn(2, 3, 12, 12)),
    "resnet18": (lambda: shapes.ResNet18(n_classes=10, width=0.125), lambda: torch.randn(2, 3, 32, 32)),
    "mobilenet_v2": (lambda: shapes.MobileNetV2(n_classes=10, width=0.25), lambda: torch.randn(2, 3, 32, 32)),
    "transformer": (lambda: shapes.TextTransformer(vocab=40, dim=32, heads=4, ff=48, layers=2, seq=6),
                    lambda: torch.randint(0, 40, (3, 6))),
    "linear_transformer": (lambda: shapes.ProjectedTransformer(features=12, dim=32, heads=4, ff=40),
                           lambda: torch.randn(3, 5, 12)),
    "custom_forward": (Custom, lambda: torch.randn(2, 3, 8, 8)),
    "grouped": (grouped, lambda: torch.randn(2, 3, 6, 6)),
    "tied_embedding": (Tied, lambda: torch.randint(0, 30, (2, 7))),
    "cross_attention": (Cross, lambda: (torch.randn(2, 5, 8), torch.randn(2, 9, 6))),
    "encoder_decoder": (EncoderDecoder, lambda: (torch.randn(2, 7, 6), torch.randn(2, 4, 5))),
    "conv1d_chain": (lambda: nn.Sequential(nn.Conv1d(3, 16, 3), nn.ReLU(), nn.Conv1d(16, 24, 3), nn.ReLU(),
                                           nn.Conv1d(24, 4, 3)), lambda: torch.randn(2, 3, 20)),
    "conv3d_chain": (lambda: nn.Sequential(nn.Conv3d(2, 8, 2), nn.BatchNorm3d(8), nn.ReLU(),
                                           nn.ConvTranspose3d(8, 6, 2), nn.Flatten(), nn.Linear(6 * 27, 3)),
                     lambda: torch.randn(2, 2, 3, 3, 3)),
    "export_fallback": (Branchy, lambda: torch.randn(2, 4, 10)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_pruned_equals_masked_original(case):
    build, data = CASES[case]
    model = ready(build())
    small, groups, removed = assert_exact(model, data())
    assert removed, "nothing was removed: the case tests nothing"
    before = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for p in small.parameters()) < before


@pytest.mark.parametrize("kind", [pytest.param("l2", marks=pytest.mark.slow),
                                  pytest.param("bn", marks=pytest.mark.slow), "taylor"])
def test_other_importances_on_resnet(kind):
    model = ready(shapes.ResNet18(n_classes=10, width=0.125))
    x = torch.randn(4, 3, 32, 32)
    if kind == "taylor":
        model.train()
        F.cross_entropy(model(x), torch.arange(4)).backward()
        model.eval()
    assert_exact(model, x, kind=kind)


def test_attention_loses_head_dimensions_exactly():
    model = ready(shapes.TextTransformer(vocab=40, dim=32, heads=4, ff=48, layers=2, seq=6))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.MultiheadAttention):
                m.in_proj_bias.normal_()   # non-zero query biases: the rescaling must cover them
    small, _, _ = assert_exact(model, torch.randint(0, 40, (3, 6)), attention="head_dims")
    attn = small.blocks[0].self_attn
    assert (attn.num_heads, attn.head_dim, attn.embed_dim) == (4, 4, 16)


def test_heads_mode_removes_whole_heads():
    model = ready(shapes.TextTransformer(vocab=40, dim=32, heads=4, ff=48, layers=2, seq=6))
    small, _, _ = assert_exact(model, torch.randint(0, 40, (3, 6)))
    attn = small.blocks[1].self_attn
    assert (attn.num_heads, attn.head_dim, attn.embed_dim) == (2, 8, 16)
    assert small.embed.embedding_dim == 16 and small.norm.normalized_shape == (16,)


def test_resnet_channels_including_the_residual_stream():
    model = ready(shapes.ResNet18(n_classes=10, width=0.25))
    small = prune_units(model, 0.5, example_inputs=torch.randn(1, 3, 32, 32))
    assert small.conv1.out_channels == 8 and small.layer1[1].conv2.out_channels == 8
    assert small.layer4[0].downsample[0].out_channels == 64 and small.fc.in_features == 64
    assert small.fc.out_features == 10
    # Half the channels everywhere: about a quarter of the weights stay.
    ratio = sum(p.numel() for p in small.parameters()) / sum(p.numel() for p in model.parameters())
    assert 0.24 < ratio < 0.27


def test_report_and_file_of_pruned_models(tmp_path):
    for build, data in (CASES["resnet18"], CASES["transformer"]):
        model = ready(build())
        x = data()
        small = prune_units(model, 0.5, example_inputs=x)
        size = save_compressed(small, tmp_path / "small.fdlz")
        report = compression_report(small)
        assert report.file_bytes == size
        assert report.float32_bytes == 4 * sum(t.numel() for t in small.state_dict().values())
        # A skeleton of the right shapes: the same pruning of a fresh copy.
        skeleton = prune_units(ready(build(), seed=1), 0.5, example_inputs=x)
        loaded = load_compressed(tmp_path / "small.fdlz", model=skeleton).eval()
        with torch.no_grad():
            assert torch.equal(loaded(x), small(x))


def test_pruned_model_trains():
    model = ready(CASES["custom_forward"][0]()).train()
    small = prune_units(model, 0.5, example_inputs=torch.randn(1, 3, 8, 8))
    assert small.training and model.training
    opt = torch.optim.SGD(small.parameters(), lr=0.1)
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 10, (8,))
    before = F.cross_entropy(small(x), y).item()
    for _ in range(20):
        opt.zero_grad()
        F.cross_entropy(small(x), y).backward()
        opt.step()
    assert F.cross_entropy(small(x), y).item() < before


def test_groups_of_the_custom_forward():
    model = ready(Custom())
    groups = {g.modules[0]: g for g in unit_groups(model, example_inputs=torch.randn(1, 3, 8, 8))
              if g.modules}
    # The residual couples the stem, its BatchNorm, the mix conv, the parameter and the SE output.
    stream = groups["stem"]
    assert set(stream.modules) >= {"stem", "bn", "mix", "se2"} and not stream.pinned
    assert ("scale", 1, 0, 1, 1, 1) in stream.members
    # The classifier reads 16 spatial positions per channel; the concatenation is two pieces.
    assert ("fc.weight", 1, 0, 1, 16, 1) in stream.members
    assert [m for m in groups["b"].members if m.tensor == "mix.weight"] == [("mix.weight", 1, 8, 1, 1, 1)]
    assert groups["fc"].pinned == ("model output",)
