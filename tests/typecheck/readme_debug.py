"""The README's debugging examples, as a user script that must pass ``mypy --strict``."""

import torch
from torch import nn

from dlkernels.debug import (MemoryProfiler, TrainingStepReport, assert_no_batch_mixing,
                             check_training_step)

model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
model[0].requires_grad_(False)  # a frozen first layer, which the check confirms stays put
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
x, y = torch.randn(32, 8), torch.randn(32, 1)
loss_fn = nn.functional.mse_loss

with MemoryProfiler(model, optimizer) as prof:
    loss_fn(model(x), y).backward()
    optimizer.step()
print(prof.report(top=5))
saved: int = prof.module("1").saved_bytes

report: TrainingStepReport = check_training_step(model, loss_fn, (x, y), optimizer,
                                                 frozen=model[0])
report.assert_ok()
assert_no_batch_mixing(model, x)
print(saved, report.changed)
