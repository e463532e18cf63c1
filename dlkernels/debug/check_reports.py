"""What the parameter-behaviour checks return: :class:`TrainingStepReport` and
:class:`IsolationReport` (plain records with their problems in words)."""

from __future__ import annotations

from dataclasses import dataclass

from dlkernels.debug._check_common import format_range, name_list, plural


__all__ = ["TrainingStepReport", "IsolationReport", "NONFINITE_KEYS"]

# Keys of TrainingStepReport.nonfinite, in the order things happen in a step.
NONFINITE_KEYS = ("parameters before the step", "outputs", "loss", "gradients",
                  "parameters after the step")


# -- reports ---------------------------------------------------------------------------------
@dataclass
class TrainingStepReport:
    """What one training step did to a model (returned by :func:`check_training_step`).

    Attributes
    ----------
    loss : float
        The loss of the step.
    changes : dict of str to float
        Every parameter of the model, trainable or not, mapped to the largest
        absolute change of any of its elements (``inf`` where an element
        became or stopped being NaN).
    expected_to_change, expected_frozen : list of str
        The parameters checked for moving, and for staying fixed.
    not_updated : list of str
        Parameters expected to change that did not.
    frozen_moved : list of str
        Parameters expected to stay fixed that changed.
    nonfinite : dict of str to list of str
        Where NaN or inf values were found, by stage: ``"parameters before the
        step"``, ``"outputs"``, ``"loss"``, ``"gradients"``, ``"parameters
        after the step"`` (parameter names, or output paths such as
        ``"outputs['logits']"``). Stages with nothing found are left out.
    out_of_range : dict of str to tuple of float
        Output paths whose values leave ``output_range``, with their (min, max).
    output_range : tuple or None
        The range that was checked.
    restored : bool
        Whether the model and optimizer were put back as they were before the step.
    """

    loss: float
    changes: dict[str, float]
    expected_to_change: list[str]
    expected_frozen: list[str]
    not_updated: list[str]
    frozen_moved: list[str]
    nonfinite: dict[str, list[str]]
    out_of_range: dict[str, tuple[float, float]]
    output_range: tuple[float | None, float | None] | None
    restored: bool

    @property
    def changed(self) -> list[str]:
        """Names of the parameters that changed at all."""
        return [name for name, change in self.changes.items() if change > 0]

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems()

    def problems(self) -> list[str]:
        """One sentence per problem found (empty when all is well)."""
        out = []
        if self.not_updated:
            out.append(f"{plural(self.not_updated, 'parameter')} did not change in the "
                       f"training step: {name_list(self.not_updated)} (no gradient reaches them? "
                       f"a .detach(), requires_grad=False, or missing from the optimizer)")
        if self.frozen_moved:
            out.append(f"{plural(self.frozen_moved, 'parameter')} expected to stay frozen "
                       f"changed: " + ", ".join(f"{n} (by up to {self.changes[n]:.3g})"
                                                for n in self.frozen_moved))
        for stage in NONFINITE_KEYS:
            if stage in self.nonfinite:
                out.append(f"NaN or inf in the {stage}: {name_list(self.nonfinite[stage])}")
        for path, (lo, hi) in self.out_of_range.items():
            out.append(f"{path} spans [{lo:.4g}, {hi:.4g}], outside output_range "
                       f"{format_range(self.output_range)}")
        return out

    def assert_ok(self) -> None:
        """Raise an AssertionError listing every problem, if there is one."""
        problems = self.problems()
        if problems:
            raise AssertionError("training step check failed:\n  - " + "\n  - ".join(problems))

    def __str__(self) -> str:
        lines = [f"training step: loss {self.loss:.6g}; {len(self.changed)} of "
                 f"{len(self.changes)} parameters changed"
                 + (" (model and optimizer restored)" if self.restored else "")]
        width = max((len(n) for n in self.changes), default=0)
        for name, change in self.changes.items():
            tag = ("  NOT UPDATED" if name in self.not_updated else
                   "  FROZEN BUT MOVED" if name in self.frozen_moved else
                   "  (frozen)" if name in self.expected_frozen else "")
            lines.append(f"  {name:<{width}}  max |change| {change:.3g}{tag}")
        problems = self.problems()
        lines.append("problems:" if problems else "no problems found")
        lines += [f"  - {p}" for p in problems]
        return "\n".join(lines)


@dataclass
class IsolationReport:
    """What each step of a multi-optimizer training loop moved (see
    :func:`check_optimizer_isolation`).

    Attributes
    ----------
    steps : list of str
        The step names, in the order they ran.
    owners : dict of str to list of str
        Each step's optimizer's parameters (by name).
    moved : dict of str to list of str
        For each step, the parameters of the *other* optimizers that changed
        during it (should be empty).
    not_updated : dict of str to list of str
        For each step, the parameters of its own optimizer that did not change.
    grads_touched : dict of str to list of str
        For each step, the other optimizers' parameters whose ``.grad`` changed
        during it. Not an error by itself (the generator's loss must flow
        through the discriminator), but in a discriminator step it means a
        missing ``.detach()`` on the generated batch: wasted backward work, and
        wrong updates if the generator's gradients are not zeroed before its step.
    restored : bool
    """

    steps: list[str]
    owners: dict[str, list[str]]
    moved: dict[str, list[str]]
    not_updated: dict[str, list[str]]
    grads_touched: dict[str, list[str]]
    restored: bool

    @property
    def ok(self) -> bool:
        """True when no step moved another optimizer's parameters and every step
        updated all of its own."""
        return not self.problems()

    def problems(self, require_updates: bool = True) -> list[str]:
        """One sentence per problem (``require_updates=False``: ignore ``not_updated``)."""
        out = []
        for step in self.steps:
            if self.moved[step]:
                out.append(f"during the {step!r} step, {plural(self.moved[step], 'parameter')} "
                           f"of other optimizers changed: {name_list(self.moved[step])}")
            if require_updates and self.not_updated[step]:
                out.append(f"the {step!r} step did not change "
                           f"{plural(self.not_updated[step], 'parameter')} of its own optimizer: "
                           f"{name_list(self.not_updated[step])}")
        return out

    def assert_ok(self, require_updates: bool = True) -> None:
        """Raise an AssertionError listing every problem, if there is one."""
        problems = self.problems(require_updates)
        if problems:
            raise AssertionError("optimizer isolation check failed:\n  - "
                                 + "\n  - ".join(problems))

    def __str__(self) -> str:
        lines = [f"optimizer isolation over steps {', '.join(map(repr, self.steps))}"]
        for step in self.steps:
            lines.append(f"  {step}: moved others {name_list(self.moved[step]) or '-'}; "
                         f"own not updated {name_list(self.not_updated[step]) or '-'}; "
                         f"others' grads touched {name_list(self.grads_touched[step]) or '-'}")
        return "\n".join(lines)
