"""The knowledge-distillation loss (Hinton, Vinyals & Dean, 2015)."""

from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F

from dlkernels._lib.torch_checks import check_finite, check_targets

__all__ = ["distillation_loss"]


def _check_temperature(temperature) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise TypeError(f"temperature must be a real number, got {type(temperature).__name__}")
    t = float(temperature)
    if not t > 0 or t == float("inf"):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    return t


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      target: torch.Tensor | None = None,
                      temperature: float = 4.0, alpha: float = 0.9,
                      reduction: str = "mean") -> torch.Tensor:
    """``alpha * T**2 * KL(p_teacher^T || p_student^T) + (1 - alpha) * CE(student, target)``.

    ``p^T = softmax(logits / T)``. The ``T**2`` keeps the soft term's gradient
    on the scale of the hard term's as ``T`` changes (Hinton et al.).

    Parameters
    ----------
    student_logits : torch.Tensor, shape (..., n_classes)
    teacher_logits : torch.Tensor, same shape
        Treated as constants (detached).
    target : torch.Tensor of int, shape (...), optional
        Hard labels. Without them the result is the temperature-scaled KL term
        alone, ``T**2 * KL`` (``alpha`` is not used).
    temperature : float, default 4.0
        Greater than 0.
    alpha : float, default 0.9
        Weight of the soft term, in [0, 1].
    reduction : {"mean", "sum", "none"}, default "mean"
        Over examples (the KL is summed over classes, then reduced like the
        cross-entropy: "mean" is PyTorch's "batchmean").

    Returns
    -------
    torch.Tensor
        A scalar, or per-example values of shape (...) with ``reduction="none"``.

    Raises
    ------
    ValueError
        Shapes of student and teacher differ, temperature <= 0, alpha outside
        [0, 1], NaN or infinite logits (named), or an unknown reduction.
    IndexError
        A target outside ``[0, n_classes)``.

    Examples
    --------
    >>> import torch
    >>> from dlkernels.distill import distillation_loss
    >>> s, t = torch.randn(8, 10), torch.randn(8, 10)
    >>> y = torch.randint(0, 10, (8,))
    >>> float(distillation_loss(t, t)) == 0.0   # same logits: no KL
    True
    >>> distillation_loss(s, t, y, temperature=2.0, alpha=0.5).shape
    torch.Size([])
    """
    for name, logits in (("student_logits", student_logits), ("teacher_logits", teacher_logits)):
        if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got "
                            f"{getattr(logits, 'dtype', type(logits).__name__)}")
        if logits.dim() < 1 or logits.shape[-1] < 1:
            raise ValueError(f"{name} must have shape (..., n_classes), got {tuple(logits.shape)}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student_logits and teacher_logits must have the same shape, got "
                         f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}")
    T = _check_temperature(temperature)
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    check_finite(student_logits.detach(), "student_logits")
    check_finite(teacher_logits.detach(), "teacher_logits")
    n_classes = student_logits.shape[-1]
    hard = None
    if target is not None:
        t = check_targets(target, n_classes, student_logits.shape[:-1])
        hard = F.cross_entropy(student_logits.reshape(-1, n_classes), t.to(student_logits.device),
                               reduction="none")
    s = F.log_softmax(student_logits.reshape(-1, n_classes) / T, dim=1)
    p = F.log_softmax(teacher_logits.detach().reshape(-1, n_classes).to(s.dtype) / T, dim=1)
    soft = (T * T) * F.kl_div(s, p, reduction="none", log_target=True).sum(1)
    per_example = soft if hard is None else alpha * soft + (1 - alpha) * hard
    if reduction == "none":
        return per_example.reshape(student_logits.shape[:-1])
    return per_example.sum() if reduction == "sum" else per_example.mean()
