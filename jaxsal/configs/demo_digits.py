"""``jaxsal demo``: every part of jaxsal on cluttered_digits, in minutes on a CPU.

One classifier (``classifier``) is trained into the demo's workdir, or reused
from it; the four parts then run on it, each with its own config, whose
``classifier`` entry the demo replaces with the top-level one:

  ``localization``: a CA masker trained on it, scored with the centre box
    and the gradient methods (LE, OM, F1, SM, PxAP, mean mask);
  ``grid_pointing``: the grid pointing game, each method alone, with CGI and
    with VAR;
  ``sanity``: the cascading model-randomisation test;
  ``gallery``: every attribution method on a few held-out test images.

Sizes are cut from the full experiments (``localization_digits`` and the
others) so that the whole demo takes under 10 minutes on 2 CPU cores; the
numbers it reports are therefore noisier than the README's tables.

Variants (``demo_digits:ARG``):
  (none) / ``cpu``: the demo.
  ``test``: the tiny test classifier and masker, a few images; for tests.
"""

import ml_collections

from jaxsal.configs import (grid_pointing_digits, localization_digits, sanity_digits,
                            small_cnn_digits)

# Every attribution method of jaxsal.attribution that needs no generative model,
# and the trained masker ("reconstruct" needs `jaxsal train-generator`; see the README).
GALLERY_METHODS = ("gradient", "gradient_x_input", "integrated_gradients", "smoothgrad",
                   "guided_backprop", "deconvnet", "gradcam", "guided_gradcam", "occlusion",
                   "rise", "meaningful_perturbation", "optimized_mask", "cgi", "var", "masker")


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.classifier = small_cnn_digits.get_config(None)
  c.classifier.num_train_steps = 1000
  c.classifier.eval_every = 500

  c.localization = localization_digits.get_config(None)
  c.localization.maskers = ("ca",)
  c.localization.masker_overrides = ("num_train_steps=400", "eval_every=400",
                                     "eval_num_images=200", "checkpoint.every=200")
  c.localization.num_images = 500
  c.localization.center_box_images = 1000
  c.localization.ig_steps = 16
  c.localization.smoothgrad_samples = 16

  c.grid_pointing = grid_pointing_digits.get_config(None)
  c.grid_pointing.grid_sizes = (2,)
  c.grid_pointing.num_grids = 48
  c.grid_pointing.num_images = 1000
  c.grid_pointing.ig_steps = 16

  c.sanity = sanity_digits.get_config(None)
  c.sanity.modes = ("cascading",)
  c.sanity.num_images = 16
  c.sanity.batch_size = 16
  c.sanity.ig_steps = 16
  c.sanity.label_modes = ()

  c.gallery = ml_collections.ConfigDict({
      "methods": GALLERY_METHODS,
      "num_images": 6,
      "ig_steps": 16,
      "smoothgrad_samples": 16,
      "occlusion_patch": 8,
      "occlusion_stride": 4,
      "rise_masks": 1000,
      "optimization_steps": 150,   # meaningful_perturbation and optimized_mask
      "gradcam_layer": "l4",
  })

  if arg in (None, "", "cpu"):
    pass
  elif arg == "test":
    c.classifier = small_cnn_digits.get_config("test")
    c.localization = localization_digits.get_config("test")
    c.grid_pointing = grid_pointing_digits.get_config("test")
    c.sanity = sanity_digits.get_config("test")
    c.sanity.modes = ("cascading",)
    c.gallery.num_images = 2
    c.gallery.ig_steps = 4
    c.gallery.smoothgrad_samples = 4
    c.gallery.rise_masks = 32
    c.gallery.optimization_steps = 4
  else:
    raise ValueError(f"unknown variant {arg!r} of demo_digits; known: cpu, test")
  return c
