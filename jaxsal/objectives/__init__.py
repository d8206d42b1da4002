"""Masking objectives: ``(logits, y, mask) -> (loss, aux)`` terms and infillers.

The terms of Phang, Park & Geras (2020): ``mask_in_loss``, ``mask_out_loss``,
``mask_in_area``, ``mask_out_area``, ``total_variation``, combined by
``masking_objective``; ``apply_mask`` with ``infill_constant`` or
``infill_blur`` makes the masked images.
"""

from jaxsal.objectives._masking import OBJECTIVES as OBJECTIVES
from jaxsal.objectives._masking import apply_mask as apply_mask
from jaxsal.objectives._masking import infill_blur as infill_blur
from jaxsal.objectives._masking import infill_constant as infill_constant
from jaxsal.objectives._masking import mask_in_area as mask_in_area
from jaxsal.objectives._masking import mask_in_loss as mask_in_loss
from jaxsal.objectives._masking import mask_out_area as mask_out_area
from jaxsal.objectives._masking import mask_out_loss as mask_out_loss
from jaxsal.objectives._masking import masking_objective as masking_objective
from jaxsal.objectives._masking import total_variation as total_variation

__all__ = [
  "OBJECTIVES",
  "apply_mask",
  "infill_blur",
  "infill_constant",
  "mask_in_area",
  "mask_in_loss",
  "mask_out_area",
  "mask_out_loss",
  "masking_objective",
  "total_variation",
]
