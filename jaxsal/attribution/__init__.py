"""Attribution methods: ``method(apply_fn, params, x, target, *, key=None, **hparams) -> maps``.

Implemented so far: ``gradient``, ``gradient_x_input``, ``integrated_gradients``
(five integration rules, chunked steps, completeness delta), ``smoothgrad``
(SmoothGrad, SmoothGrad squared, VarGrad over any method), ``occlusion``, ``all_classes``
and ``for_classes`` (every class in one vmapped call), and the channel
reductions and normalisations used by metrics and figures.
"""

from jaxsal.attribution._classes import all_classes, for_classes
from jaxsal.attribution._common import check_inputs, num_classes
from jaxsal.attribution._gradient import gradient, gradient_x_input
from jaxsal.attribution._occlusion import occlusion
from jaxsal.attribution._smoothgrad import smoothgrad
from jaxsal.attribution._integrated_gradients import (
    RULES,
    integrated_gradients,
    integration_points,
    make_baseline,
)
from jaxsal.attribution._postprocess import (
    normalize_abs,
    normalize_diverging,
    normalize_percentile,
    reduce_channels,
)

__all__ = [
    "RULES",
    "all_classes",
    "check_inputs",
    "for_classes",
    "gradient",
    "gradient_x_input",
    "integrated_gradients",
    "integration_points",
    "make_baseline",
    "normalize_abs",
    "normalize_diverging",
    "normalize_percentile",
    "num_classes",
    "occlusion",
    "reduce_channels",
    "smoothgrad",
]
