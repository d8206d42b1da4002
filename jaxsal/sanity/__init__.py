"""Sanity checks for saliency maps (Adebayo et al. 2018) as parameter-tree transforms.

``randomize`` re-initialises layers (cascading, independent or at once),
``stack`` stacks the stages for one vmapped call, ``model_order`` finds the
layers' order from any ``apply_fn``; ``similarity`` and its parts
(``spearman``, ``ssim``, ``hog``, ``hog_similarity``) compare maps.
"""

from jaxsal.sanity._randomize import DEFAULT_INITIALIZERS as DEFAULT_INITIALIZERS
from jaxsal.sanity._randomize import MODES as MODES
from jaxsal.sanity._randomize import layer_names as layer_names
from jaxsal.sanity._randomize import model_order as model_order
from jaxsal.sanity._randomize import randomize as randomize
from jaxsal.sanity._randomize import stack as stack
from jaxsal.sanity._similarity import MEASURES as MEASURES
from jaxsal.sanity._similarity import hog as hog
from jaxsal.sanity._similarity import hog_similarity as hog_similarity
from jaxsal.sanity._similarity import similarity as similarity
from jaxsal.sanity._similarity import spearman as spearman
from jaxsal.sanity._similarity import ssim as ssim

__all__ = [
  "DEFAULT_INITIALIZERS",
  "MEASURES",
  "MODES",
  "hog",
  "hog_similarity",
  "layer_names",
  "model_order",
  "randomize",
  "similarity",
  "spearman",
  "ssim",
  "stack",
]
