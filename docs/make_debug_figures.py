"""Make the figures and report texts of docs/user_guide/debug.rst from a real run.

    python docs/make_debug_figures.py

Needs dlkernels installed with torch and matplotlib (``pip install '.[torch,plot]'``).
Writes into docs/_static/:

* ``memory_report.txt``: ``MemoryProfiler.report()`` of one training step of a small CNN;
* ``memory_profile.png``: ``MemoryProfiler.plot()`` of the same step;
* ``memory_checkpoint.txt``: the saved-for-backward totals of a deeper MLP with and
  without activation checkpointing;
* ``check_report.txt``: ``str(check_training_step(...))`` on a model with a planted bug.

The step times in the report are those of the machine that ran the script.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from dlkernels.debug import MemoryProfiler, check_training_step
from dlkernels.debug._util import format_bytes

OUT = Path(__file__).resolve().parent / "_static"


def cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 8 * 8, 64), nn.ReLU(), nn.Linear(64, 10))


def profile_cnn() -> None:
    torch.manual_seed(0)
    model = cnn()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))

    def step():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    step()  # as in a running loop: Adam's state exists before the profiled step
    with MemoryProfiler(model, opt) as prof:
        step()
    (OUT / "memory_report.txt").write_text(prof.report() + "\n")
    prof.plot(OUT / "memory_profile.png",
              title="One Adam step of a small CNN (batch of 32 images, 3x32x32)")


class Block(nn.Module):
    def __init__(self, width: int, ckpt: bool):
        super().__init__()
        self.ckpt = ckpt
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x):
        if self.ckpt:
            return x + checkpoint(self.mlp, x, use_reentrant=False)
        return x + self.mlp(x)


def checkpoint_saving() -> None:
    lines = ["8 residual blocks Linear(256, 1024) - GELU - Linear(1024, 256), batch 512:"]
    for ckpt in (False, True):
        torch.manual_seed(0)
        model = nn.Sequential(*[Block(256, ckpt) for _ in range(8)])
        x = torch.randn(512, 256)
        with MemoryProfiler(model) as prof:
            model(x).pow(2).mean().backward()
        recompute = prof.phases.get("recompute")
        lines.append(f"  checkpointing {'on ' if ckpt else 'off'}: saved for backward "
                     f"{format_bytes(prof.saved_bytes)}, peak alive "
                     f"{format_bytes(prof.peak_saved_bytes)}"
                     + (f", recomputation {recompute.seconds * 1e3:.1f} ms" if recompute else ""))
    (OUT / "memory_checkpoint.txt").write_text("\n".join(lines) + "\n")


class Buggy(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(16, 32)
        self.head = nn.Linear(32, 1)

    def forward(self, x):
        return torch.sigmoid(self.head(torch.relu(self.encoder(x)).detach()))  # the bug


def check_report() -> None:
    torch.manual_seed(0)
    model = Buggy()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batch = (torch.randn(64, 16), torch.rand(64, 1))
    report = check_training_step(model, nn.functional.binary_cross_entropy, batch, opt,
                                 output_range=(0, 1))
    (OUT / "check_report.txt").write_text(str(report) + "\n")


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    profile_cnn()
    checkpoint_saving()
    check_report()
    for name in ("memory_report.txt", "memory_checkpoint.txt", "check_report.txt"):
        print(f"--- {name}\n{(OUT / name).read_text()}")
