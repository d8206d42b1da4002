"""``jaxsal demo``: every part of jaxsal on cluttered_digits, in minutes on a CPU.

One classifier (``classifier``) is trained into the demo's workdir, or reused
from it; the four parts then run on it, each with its own config, whose
``classifier`` entry the demo replaces with the top-level one:

  ``localization``: a CA masker trained on it, scored with the centre box
    and the gradient methods (LE, OM, F1, SM, PxAP, mean mask);
  ``grid_pointing``: the grid pointing game, each method alone, with CGI and
    with VAR;
  ``sanity``: the cascading model-randomisation test;
  ``gallery``: every attribution method on a few held-out test images;
  ``reconstruction``: a small inpainting VAE trained on the digits, then the
    top 10% of each map kept and the rest sampled from it, counting how often
    the classifier keeps its decision (our reading of Thakur & Fischmeister
    2020), against random pixels and blobs of the same area.

Sizes are cut from the full experiments (``localization_digits`` and the
others) so that the whole demo takes under 10 minutes on 2 CPU cores; the
numbers it reports are therefore noisier than the README's tables.

Variants (``demo_digits:ARG``):
  (none) / ``cpu``: the demo.
  ``test``: the tiny test classifier and masker, a few images; for tests.
"""

import ml_collections

from jaxsal.configs import (
  grid_pointing_digits,
  localization_digits,
  reconstruction_digits,
  sanity_digits,
  small_cnn_digits,
)

# Every attribution method of jaxsal.attribution that needs no generative model,
# and the trained masker ("reconstruct" needs `jaxsal train-generator`; see the README).
GALLERY_METHODS = (
  "gradient",
  "gradient_x_input",
  "integrated_gradients",
  "smoothgrad",
  "guided_backprop",
  "deconvnet",
  "gradcam",
  "guided_gradcam",
  "occlusion",
  "rise",
  "meaningful_perturbation",
  "optimized_mask",
  "cgi",
  "var",
  "masker",
)


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.classifier = small_cnn_digits.get_config(None)
  c.classifier.num_train_steps = 1000
  c.classifier.eval_every = 500

  c.localization = localization_digits.get_config(None)
  c.localization.maskers = ("ca",)
  c.localization.masker_overrides = (
    "num_train_steps=400",
    "eval_every=400",
    "eval_num_images=200",
    "checkpoint.every=200",
  )
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

  c.gallery = ml_collections.ConfigDict(
    {
      "methods": GALLERY_METHODS,
      "num_images": 6,
      "ig_steps": 16,
      "smoothgrad_samples": 16,
      "occlusion_patch": 8,
      "occlusion_stride": 4,
      "rise_masks": 1000,
      "optimization_steps": 150,  # meaningful_perturbation and optimized_mask
      "gradcam_layer": "l4",
    }
  )

  c.reconstruction = reconstruction_digits.get_config(None)
  r = c.reconstruction
  # A smaller, shorter-trained generator than reconstruction_digits' (46 s
  # against 16 min on 2 cores): coarser samples, the same protocol.
  r.generator.model.widths = (8, 16, 32)
  r.generator.batch_size = 32
  r.generator.num_train_steps = 300
  r.generator.eval_every = 300
  r.generator.eval_num_images = 200
  r.generator.checkpoint.every = 300
  r.masker_overrides = c.localization.masker_overrides  # the localisation's masker, reused
  r.methods = (
    "optimized_mask",
    "masker",
    "gradient",
    "integrated_gradients",
    "random_pixels",
    "random_blobs",
  )
  r.areas = (0.1,)
  r.num_images = 100
  r.seeds = (0,)
  r.num_samples = 4
  r.ig_steps = 16
  r.optimized_mask.steps = 150
  r.optimized_mask.mask_scale = 4
  r.localization = False
  r.figure_images = 3

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
    c.reconstruction = reconstruction_digits.get_config("test")
    c.reconstruction.methods = ("masker", "random_pixels")
    c.reconstruction.seeds = (0,)
    c.reconstruction.areas = (0.1,)
    c.reconstruction.localization = False
    c.reconstruction.figure_images = 2
  else:
    raise ValueError(f"unknown variant {arg!r} of demo_digits; known: cpu, test")
  return c
