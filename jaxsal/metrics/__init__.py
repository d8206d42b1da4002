"""Metrics of saliency maps: pointing games and weakly supervised localisation.

``grid_pointing_game`` scores maps on n x n grids of distinct classes;
``summarize_pointing`` pools the scores; ``confident_correct`` picks the
images grids are built from. ``mask_to_box``, ``localization_error`` (LE),
``official_metric`` (OM), ``mask_f1`` (F1, F1a), ``pxap`` and
``saliency_metric`` (SM) evaluate masks against boxes and pixel masks.
"""

from jaxsal.metrics._localization import box_iou as box_iou
from jaxsal.metrics._localization import box_masks as box_masks
from jaxsal.metrics._localization import check_boxes_inside as check_boxes_inside
from jaxsal.metrics._localization import check_unit_masks as check_unit_masks
from jaxsal.metrics._localization import largest_component as largest_component
from jaxsal.metrics._localization import localization_error as localization_error
from jaxsal.metrics._localization import localization_scores as localization_scores
from jaxsal.metrics._localization import mask_f1 as mask_f1
from jaxsal.metrics._localization import mask_to_box as mask_to_box
from jaxsal.metrics._localization import official_metric as official_metric
from jaxsal.metrics._localization import pxap as pxap
from jaxsal.metrics._localization import pxap_counts as pxap_counts
from jaxsal.metrics._localization import pxap_from_counts as pxap_from_counts
from jaxsal.metrics._localization import saliency_metric as saliency_metric
from jaxsal.metrics._pointing import confident_correct as confident_correct
from jaxsal.metrics._pointing import grid_pointing_game as grid_pointing_game
from jaxsal.metrics._pointing import smooth_maps as smooth_maps
from jaxsal.metrics._pointing import summarize_pointing as summarize_pointing

__all__ = [
  "box_iou",
  "box_masks",
  "check_boxes_inside",
  "check_unit_masks",
  "confident_correct",
  "grid_pointing_game",
  "largest_component",
  "localization_error",
  "localization_scores",
  "mask_f1",
  "mask_to_box",
  "official_metric",
  "pxap",
  "pxap_counts",
  "pxap_from_counts",
  "saliency_metric",
  "smooth_maps",
  "summarize_pointing",
]
