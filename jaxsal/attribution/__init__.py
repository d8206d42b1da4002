"""Attribution methods: ``method(apply_fn, params, x, target, *, key=None, **hparams) -> maps``.

Gradients: ``gradient``, ``gradient_x_input``, ``integrated_gradients`` (five
integration rules, chunked steps, completeness delta), ``guided_backprop`` and
``deconvnet`` (ReLUs rewritten in the traced program of any ``apply_fn``),
``smoothgrad`` (SmoothGrad, SmoothGrad squared, VarGrad over any method).
CAM: ``gradcam`` and ``guided_gradcam`` on a named tap. Perturbation:
``occlusion``, ``rise``, ``meaningful_perturbation``, ``optimized_mask``
(a random-start preservation mask per input) and ``reconstruct`` (the
salient pixels kept, the rest sampled from a generative model). ``all_classes`` and
``for_classes`` give every class's map in one compiled call. Class-relevant
maps over any method: ``competition`` (competition for pixels; ``cgi`` over
gradient x input) and ``var`` (VAR). Channel reductions and normalisations
for metrics and figures. ``get_method(name, **hparams)`` gives any of them by
name with the common signature (``method_names()`` lists the names).
"""

from jaxsal.attribution._classes import all_classes, for_classes
from jaxsal.attribution._common import check_inputs, num_classes
from jaxsal.attribution._competition import cgi, competition, competition_from_maps
from jaxsal.attribution._gradcam import gradcam, guided_gradcam
from jaxsal.attribution._gradient import gradient, gradient_x_input
from jaxsal.attribution._guided import deconvnet, guided_backprop
from jaxsal.attribution._integrated_gradients import (
  RULES,
  integrated_gradients,
  integration_points,
  make_baseline,
)
from jaxsal.attribution._meaningful_perturbation import meaningful_perturbation, total_variation
from jaxsal.attribution._occlusion import occlusion
from jaxsal.attribution._optimized_mask import optimized_mask
from jaxsal.attribution._postprocess import (
  keep_top,
  normalize_abs,
  normalize_diverging,
  normalize_percentile,
  reduce_channels,
)
from jaxsal.attribution._reconstruct import reconstruct
from jaxsal.attribution._registry import (
  get_method,
  method_defaults,
  method_description,
  method_hparams,
  method_names,
  needs_key,
)
from jaxsal.attribution._rise import rise, rise_masks
from jaxsal.attribution._smoothgrad import smoothgrad
from jaxsal.attribution._var import contrastive_classes, var, var_from_maps

__all__ = [
  "RULES",
  "all_classes",
  "cgi",
  "check_inputs",
  "competition",
  "competition_from_maps",
  "contrastive_classes",
  "deconvnet",
  "for_classes",
  "get_method",
  "gradcam",
  "gradient",
  "gradient_x_input",
  "guided_backprop",
  "guided_gradcam",
  "integrated_gradients",
  "integration_points",
  "keep_top",
  "make_baseline",
  "meaningful_perturbation",
  "method_defaults",
  "method_description",
  "method_hparams",
  "method_names",
  "needs_key",
  "normalize_abs",
  "normalize_diverging",
  "normalize_percentile",
  "num_classes",
  "occlusion",
  "optimized_mask",
  "reconstruct",
  "reduce_channels",
  "rise",
  "rise_masks",
  "smoothgrad",
  "total_variation",
  "var",
  "var_from_maps",
]
