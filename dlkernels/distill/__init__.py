"""Knowledge distillation (needs torch): the loss, temperature schedules and a training loop.

.. autosummary::
   :toctree: generated/

   distillation_loss
   TemperatureSchedule
   Distiller
"""

from dlkernels._lib.torch_import import require_torch

require_torch("dlkernels.distill")  # one clear ImportError without torch

from dlkernels.distill.distiller import Distiller  # noqa: E402
from dlkernels.distill.loss import distillation_loss  # noqa: E402
from dlkernels.distill.schedule import TemperatureSchedule  # noqa: E402

__all__ = ["distillation_loss", "TemperatureSchedule", "Distiller"]
