"""Knowledge distillation (needs torch): the loss, temperature schedules and a training loop.

.. autosummary::
   :toctree: generated/

   distillation_loss
   TemperatureSchedule
   Distiller
"""

from dlkernels.distill.distiller import Distiller
from dlkernels.distill.loss import distillation_loss
from dlkernels.distill.schedule import TemperatureSchedule

__all__ = ["distillation_loss", "TemperatureSchedule", "Distiller"]
