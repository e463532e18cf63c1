"""A distillation training loop: use it as is or subclass it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable
from typing import Any

from dlkernels._lib.array_types import PathLike

import torch
from torch import nn

from dlkernels._lib.validation import check_count
from dlkernels.distill.loss import _check_temperature, distillation_loss
from dlkernels.distill.schedule import TemperatureSchedule

__all__ = ["Distiller"]


class Distiller:
    """Train ``student`` to match ``teacher`` (and the labels, if the batches have them).

    Parameters
    ----------
    teacher : torch.nn.Module
        Run in eval mode under ``torch.no_grad``; never updated.
    student : torch.nn.Module
        Trained. Under ``torch.distributed`` (initialised, world size > 1) it is
        wrapped in :class:`~torch.nn.parallel.DistributedDataParallel`, so the
        same script runs unchanged under ``torchrun`` (gloo on CPU, nccl on GPU).
    optimizer : torch.optim.Optimizer
        Over the student's parameters.
    loss : callable, default :func:`~dlkernels.distill.distillation_loss`
        ``loss(student_logits, teacher_logits, target, temperature=..., alpha=...)``.
    schedule : TemperatureSchedule or float, default 4.0
        The temperature, constant or annealed per optimizer step or per epoch.
    alpha : float, default 0.9
        Weight of the soft (teacher) term.
    accumulation_steps : int, default 1
        Micro-batches whose gradients are summed (each loss divided by this)
        before one optimizer step; under DDP the gradients are all-reduced only
        on the last micro-batch.
    amp : bool, default False
        Mixed precision: float16 autocast with a gradient scaler on CUDA,
        bfloat16 autocast on the CPU.
    callbacks : iterable of callables, optional
        Each is called as ``callback(distiller, metrics)`` after every optimizer
        step, ``metrics`` holding ``step``, ``epoch``, ``loss`` and ``temperature``.
    device : torch.device, optional
        Where batches are moved; default the student's device.

    Notes
    -----
    Subclass hooks: :meth:`unpack` (batch -> inputs, target), :meth:`student_logits`
    and :meth:`teacher_logits` (model outputs -> logits), :meth:`compute_loss`.

    Examples
    --------
    >>> import torch
    >>> from dlkernels.distill import Distiller
    >>> teacher, student = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    >>> opt = torch.optim.SGD(student.parameters(), lr=0.1)
    >>> d = Distiller(teacher, student, opt, schedule=2.0)
    >>> batches = [(torch.randn(8, 4), torch.randint(0, 3, (8,))) for _ in range(5)]
    >>> history = d.fit(batches, epochs=2)
    >>> d.step, len(history)
    (10, 10)
    """

    def __init__(self, teacher: nn.Module, student: nn.Module, optimizer: torch.optim.Optimizer,
                 loss: Callable[..., torch.Tensor] = distillation_loss,
                 schedule: TemperatureSchedule | float = 4.0, *, alpha: float = 0.9,
                 accumulation_steps: int = 1, amp: bool = False,
                 callbacks: Iterable[Callable[[Distiller, dict[str, Any]], object]] = (),
                 device: str | torch.device | None = None) -> None:
        if not isinstance(teacher, nn.Module) or not isinstance(student, nn.Module):
            raise TypeError("teacher and student must be torch.nn.Module instances")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got "
                            f"{type(optimizer).__name__}")
        if not callable(loss):
            raise TypeError(f"loss must be callable, got {type(loss).__name__}")
        if not isinstance(schedule, TemperatureSchedule):
            schedule = TemperatureSchedule(_check_temperature(schedule))
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
            raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
        self.teacher: nn.Module = teacher
        self.student: nn.Module = student
        self.optimizer: torch.optim.Optimizer = optimizer
        self.loss: Callable[..., torch.Tensor] = loss
        self.schedule: TemperatureSchedule = schedule
        self.alpha: float = float(alpha)
        self.accumulation_steps: int = check_count(accumulation_steps, "accumulation_steps",
                                                   minimum=1)
        self.callbacks: list[Callable[[Distiller, dict[str, Any]], object]] = list(callbacks)
        first = next(student.parameters(), None)
        self.device: torch.device = torch.device(device) if device is not None else (
            first.device if first is not None else torch.device("cpu"))
        self.amp: bool = bool(amp)
        self._scaler = (torch.amp.GradScaler("cuda") if self.amp and self.device.type == "cuda"
                        else None)
        self.model: nn.Module = self._maybe_ddp(student)
        self.teacher.eval()
        self.step: int = 0        # optimizer steps taken
        self.epoch: int = 0       # epochs completed
        self._micro = 0      # micro-batches since the last optimizer step
        self._history: list[dict[str, Any]] = []

    def _maybe_ddp(self, student: nn.Module) -> nn.Module:
        dist = torch.distributed
        if (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
                and not isinstance(student, nn.parallel.DistributedDataParallel)):
            ids = [self.device] if self.device.type == "cuda" else None
            return nn.parallel.DistributedDataParallel(student, device_ids=ids)
        return student

    @property
    def is_main_process(self) -> bool:
        dist = torch.distributed
        return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0

    # -- hooks ----------------------------------------------------------------------------
    def unpack(self, batch: Any) -> tuple[Any, Any]:
        """``(inputs, target)`` from a batch: a pair, or inputs alone (target None)."""
        if isinstance(batch, (tuple, list)) and len(batch) == 2:
            inputs, target = batch
        else:
            inputs, target = batch, None
        move = (lambda t: t.to(self.device, non_blocking=True)
                if isinstance(t, torch.Tensor) else t)
        return move(inputs), move(target)

    def teacher_logits(self, inputs: Any) -> torch.Tensor:
        """The teacher's logits for ``inputs`` (override for models called differently)."""
        out: torch.Tensor = self.teacher(inputs)
        return out

    def student_logits(self, inputs: Any) -> torch.Tensor:
        """The student's logits for ``inputs`` (through DDP when it wraps the student)."""
        out: torch.Tensor = self.model(inputs)
        return out

    @property
    def temperature(self) -> float:
        """The temperature now (from the schedule, per step or per epoch)."""
        return self.schedule(self.step if self.schedule.per == "step" else self.epoch)

    def compute_loss(self, batch: Any) -> torch.Tensor:
        """The distillation loss of one batch (the teacher runs without gradients)."""
        inputs, target = self.unpack(batch)
        with torch.no_grad():
            teacher = self.teacher_logits(inputs)
        student = self.student_logits(inputs)
        return self.loss(student.float(), teacher.float(), target,
                         temperature=self.temperature, alpha=self.alpha)

    # -- the loop -------------------------------------------------------------------------
    def _autocast(self):
        if not self.amp:
            return contextlib.nullcontext()
        dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype)

    def train_step(self, batch: Any) -> float:
        """One micro-batch: forward, backward, and an optimizer step every
        ``accumulation_steps`` micro-batches. Returns the (undivided) loss."""
        self.model.train()
        self.teacher.eval()
        last = self._micro + 1 == self.accumulation_steps
        sync = (contextlib.nullcontext() if last or not hasattr(self.model, "no_sync")
                else self.model.no_sync())
        with sync:
            with self._autocast():
                loss = self.compute_loss(batch)
            scaled = loss / self.accumulation_steps
            (self._scaler.scale(scaled) if self._scaler else scaled).backward()
        self._micro += 1
        value = float(loss.detach())
        if last:
            self._optimizer_step(value)
        return value

    def _optimizer_step(self, loss_value: float) -> None:
        if self._scaler:
            self._scaler.step(self.optimizer)
            self._scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self._micro = 0
        metrics = {"step": self.step, "epoch": self.epoch, "loss": loss_value,
                   "temperature": self.temperature}
        self.step += 1
        for callback in self.callbacks:
            callback(self, metrics)
        self._history.append(metrics)

    def fit(self, batches: Iterable[Any], epochs: int = 1,
            progress: bool = False) -> list[dict[str, Any]]:
        """Train for ``epochs`` passes over ``batches`` (a DataLoader or any re-iterable).

        Returns the metrics of every optimizer step. A DataLoader's
        DistributedSampler gets ``set_epoch`` each epoch. Leftover micro-batches
        at the end of an epoch make one last, smaller optimizer step.
        """
        epochs = check_count(epochs, "epochs", minimum=1)
        self._history = []
        for _ in range(epochs):
            sampler = getattr(batches, "sampler", None)
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(self.epoch)
            iterator = batches
            if progress and self.is_main_process:
                from tqdm.auto import tqdm
                iterator = tqdm(batches, desc=f"epoch {self.epoch}")
            value = float("nan")
            for batch in iterator:
                value = self.train_step(batch)
            if self._micro:
                self._optimizer_step(value)
            self.epoch += 1
        return self._history

    @torch.no_grad()
    def evaluate(self, batches: Iterable[Any]) -> dict[str, float]:
        """The student's accuracy and mean cross-entropy over labelled batches."""
        self.student.eval()
        correct = total = 0
        nll = 0.0
        for batch in batches:
            inputs, target = self.unpack(batch)
            logits = self.student(inputs).float()
            correct += int((logits.argmax(-1) == target).sum())
            nll += float(torch.nn.functional.cross_entropy(logits, target, reduction="sum"))
            total += target.numel()
        return {"accuracy": correct / max(total, 1), "loss": nll / max(total, 1)}

    # -- checkpoints ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Student, optimizer (and AMP scaler) state and the step and epoch counters."""
        state: dict[str, Any] = {"student": self.student.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "step": self.step, "epoch": self.epoch}
        if self._scaler:
            state["scaler"] = self._scaler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.student.load_state_dict(state["student"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        if self._scaler and "scaler" in state:
            self._scaler.load_state_dict(state["scaler"])
        self._micro = 0

    def save_checkpoint(self, path: PathLike) -> None:
        """Write student, optimizer and counters (only on rank 0 under DDP)."""
        if self.is_main_process:
            torch.save(self.state_dict(), os.fspath(path))

    def load_checkpoint(self, path: PathLike) -> None:
        """Resume from :meth:`save_checkpoint` (``weights_only`` loading: runs no code)."""
        state = torch.load(os.fspath(path), map_location=self.device, weights_only=True)
        self.load_state_dict(state)
