"""Models shaped like resnet18, mobilenet-v2 and a small transformer, defined here.

torchvision's compiled operators do not load against the pinned CPU torch, so
the pruning tests and ``bench/prune_compare.py`` build these look-alikes
themselves. ``width`` scales every channel count (1.0: the published sizes),
so the tests run on small copies and the benchmark on the real ones.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _c(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


class BasicBlock(nn.Module):
    """resnet18's block: two 3x3 convolutions and a residual add (``out += identity``)."""

    def __init__(self, inp, out, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inp, out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out, out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out)
        self.downsample = None
        if stride != 1 or inp != out:
            self.downsample = nn.Sequential(nn.Conv2d(inp, out, 1, stride, bias=False),
                                            nn.BatchNorm2d(out))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class ResNet18(nn.Module):
    def __init__(self, n_classes=1000, width=1.0):
        super().__init__()
        c = [_c(v, width) for v in (64, 128, 256, 512)]
        self.conv1 = nn.Conv2d(3, c[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(c[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, inp = [], c[0]
        for i, out in enumerate(c):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock(inp, out, stride), BasicBlock(out, out)))
            inp = out
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c[3], n_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class InvertedResidual(nn.Module):
    """mobilenet-v2's block: 1x1 expand, 3x3 depthwise, 1x1 project, residual when shapes allow."""

    def __init__(self, inp, out, stride, expand):
        super().__init__()
        hidden = inp * expand
        self.use_res = stride == 1 and inp == out
        layers = []
        if expand != 1:
            layers += [nn.Conv2d(inp, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
                   nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
                   nn.Conv2d(hidden, out, 1, bias=False), nn.BatchNorm2d(out)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    # (expansion, channels, repeats, stride) of the paper's Table 2
    SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
               (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self, n_classes=1000, width=1.0):
        super().__init__()
        inp, last = _c(32, width), _c(1280, width)
        layers = [nn.Conv2d(3, inp, 3, 2, 1, bias=False), nn.BatchNorm2d(inp), nn.ReLU6(inplace=True)]
        for t, c, n, s in self.SETTING:
            out = _c(c, width)
            for i in range(n):
                layers.append(InvertedResidual(inp, out, s if i == 0 else 1, t))
                inp = out
        layers += [nn.Conv2d(inp, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU6(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, n_classes))

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


class TextTransformer(nn.Module):
    """Token + learned position embedding, ``nn.TransformerEncoderLayer`` blocks, mean pool, head."""

    def __init__(self, vocab=1000, dim=256, heads=8, ff=1024, layers=4, seq=64, n_classes=10):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(1, seq, dim) * 0.02)
        self.blocks = nn.Sequential(*[
            nn.TransformerEncoderLayer(dim, heads, ff, dropout=0.0, batch_first=True) for _ in range(layers)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_classes)

    def forward(self, tokens):
        x = self.embed(tokens) + self.pos[:, :tokens.shape[1]]
        return self.head(self.norm(self.blocks(x)).mean(1))


class ProjectedTransformer(nn.Module):
    """The issue's "Linear + TransformerEncoderLayer + head": float features in, classes out."""

    def __init__(self, features=64, dim=256, heads=8, ff=1024, n_classes=10):
        super().__init__()
        self.proj = nn.Linear(features, dim)
        self.block = nn.TransformerEncoderLayer(dim, heads, ff, dropout=0.0, batch_first=True)
        self.head = nn.Linear(dim, n_classes)

    def forward(self, x):
        return self.head(self.block(self.proj(x)).mean(1))


def mlp(sizes=(784, 1024, 1024, 10)):
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def cnn(channels=(3, 64, 128, 256), n_classes=10):
    """conv-bn-relu x3 (the second and third with stride 2) + global pool + linear."""
    layers = []
    for i, (a, b) in enumerate(zip(channels[:-1], channels[1:])):
        layers += [nn.Conv2d(a, b, 3, 1 if i == 0 else 2, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels[-1], n_classes))


def randomize_norms(model, seed=0):
    """Give every norm layer non-trivial affine parameters and running statistics."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm)):
                if getattr(m, "weight", None) is not None:
                    m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                if getattr(m, "running_mean", None) is not None:
                    m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                    m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model
