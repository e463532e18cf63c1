"""The README's beam search and distillation examples, for ``mypy --strict``."""

from typing import Any

import torch
from torch import nn

from dlkernels.decoding import BeamSearchOutput, beam_search
from dlkernels.distill import Distiller, TemperatureSchedule, distillation_loss

vocab, hidden = 20, 16
embed, project = torch.randn(vocab, hidden), torch.randn(hidden, vocab)


def step_fn(tokens: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
    h = torch.tanh(state + embed[tokens[:, -1]])
    return torch.log_softmax(h @ project, dim=1), h


out: BeamSearchOutput = beam_search(step_fn, torch.zeros(4, hidden), batch_size=4, beam_size=3,
                                    max_length=10, bos_id=1, eos_id=2)
best: torch.Tensor = out.sequences[:, 0]

teacher, student = nn.Linear(8, 5), nn.Linear(8, 5)
x, labels = torch.randn(64, 8), torch.randint(0, 5, (64,))
loss = distillation_loss(student(x), teacher(x), labels, temperature=4.0, alpha=0.9)
loss.backward()
loader = [(x[i:i + 16], labels[i:i + 16]) for i in range(0, 64, 16)]
distiller = Distiller(teacher, student, torch.optim.SGD(student.parameters(), lr=0.1),
                      schedule=TemperatureSchedule(4.0, 1.0, total=8, kind="linear"))
history: list[dict[str, Any]] = distiller.fit(loader, epochs=2)
print(best.shape, loss.item(), len(history), distiller.evaluate(loader)["accuracy"])
