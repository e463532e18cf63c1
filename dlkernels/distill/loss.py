"""The knowledge-distillation loss (Hinton, Vinyals & Dean, 2015)."""

from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F

from dlkernels._lib.torch_checks import check_finite, check_targets
from dlkernels._lib.torch_reduction import check_reduction, reduce_loss

__all__ = ["distillation_loss"]


def _check_temperature(temperature) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise TypeError(f"temperature must be a real number, got {type(temperature).__name__}")
    t = float(temperature)
    if not t > 0 or t == float("inf"):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    return t


def _log_softmax_at(logits: torch.Tensor, T: float) -> torch.Tensor:
    """``log_softmax(logits / T)`` of each row, the row maximum taken out
    first: finite logits divided by a small ``T`` would overflow to inf and give
    NaN (a gap beyond the float range gives -inf, probability 0)."""
    return F.log_softmax((logits - logits.amax(dim=1, keepdim=True)) / T, dim=1)


def distillation_loss(input: torch.Tensor, teacher_logits: torch.Tensor,
                      target: torch.Tensor | None = None, *,
                      temperature: float = 4.0, alpha: float = 0.9,
                      reduction: str = "mean") -> torch.Tensor:
    """``alpha * T**2 * KL(p_teacher^T || p_student^T) + (1 - alpha) * CE(input, target)``.

    ``p^T = softmax(logits / T)``, ``p_student`` from ``input``. The ``T**2`` keeps
    the soft term's gradient on the scale of the hard term's as ``T`` changes
    (Hinton et al.).

    Parameters
    ----------
    input : torch.Tensor, shape (..., n_classes)
        The student's logits (named as the input of torch's losses).
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
        A scalar, or per-example values of shape (...) with ``reduction="none"``;
        float32 for 16-bit logits (worked in float32, as under autocast), else
        the dtype of ``input``. Logits whose gaps, divided by ``T``, pass the
        float range give an infinite loss, never NaN.

    Raises
    ------
    ValueError
        Shapes of ``input`` and ``teacher_logits`` differ, temperature <= 0,
        alpha outside [0, 1], NaN or infinite logits (named), or an unknown
        reduction.
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
    for name, logits in (("input", input), ("teacher_logits", teacher_logits)):
        if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got "
                            f"{getattr(logits, 'dtype', type(logits).__name__)}")
        if logits.dim() < 1 or logits.shape[-1] < 1:
            raise ValueError(f"{name} must have shape (..., n_classes), got {tuple(logits.shape)}")
    if input.shape != teacher_logits.shape:
        raise ValueError(f"input and teacher_logits must have the same shape, got "
                         f"{tuple(input.shape)} and {tuple(teacher_logits.shape)}")
    T = _check_temperature(temperature)
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    reduction = check_reduction(reduction)
    check_finite(input.detach(), "input")
    check_finite(teacher_logits.detach(), "teacher_logits")
    n_classes = input.shape[-1]
    # 16-bit logits are worked in float32, as autocast does for torch's losses:
    # T**2 alone can pass float16's range.
    work = torch.promote_types(input.dtype, torch.float32)
    student = input.reshape(-1, n_classes).to(work)
    hard = None
    if target is not None:
        t = check_targets(target, n_classes, input.shape[:-1])
        hard = F.cross_entropy(student, t.to(input.device), reduction="none")
    s = _log_softmax_at(student, T)
    p = _log_softmax_at(teacher_logits.detach().reshape(-1, n_classes).to(work), T)
    # A class the teacher gives probability 0 (underflowed) adds nothing, even
    # where the student's is 0 too (kl_div would give 0 * inf = NaN).
    teacher = p.exp()
    kl = torch.where(teacher > 0, teacher * (p - s), 0.0).sum(1)
    soft = (T * T) * kl
    if hard is None or alpha == 1:
        per_example = soft
    else:  # a term of weight 0 is left out, so that its inf cannot turn the sum into NaN
        per_example = (1 - alpha) * hard if alpha == 0 else alpha * soft + (1 - alpha) * hard
    return reduce_loss(per_example.reshape(input.shape[:-1]), reduction)
