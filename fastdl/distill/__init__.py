"""Knowledge distillation (needs torch): the loss, temperature schedules and a training loop.

.. autosummary::
   :toctree: generated/

   distillation_loss
   TemperatureSchedule
   Distiller
"""

from fastdl.distill.distiller import Distiller
from fastdl.distill.loss import distillation_loss
from fastdl.distill.schedule import TemperatureSchedule

__all__ = ["distillation_loss", "TemperatureSchedule", "Distiller"]
