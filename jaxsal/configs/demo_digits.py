"""``jaxsal demo``: every part of jaxsal on cluttered_digits, in minutes on a CPU.

One classifier (``classifier``) is trained into the demo's workdir, or reused
from it; the parts then run on it, each with its own config, whose
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
numbers it reports are therefore noisier than the full experiments'.

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

# The gallery's settings where they differ from get_method's defaults.
GALLERY_SETTINGS = {
  "integrated_gradients": {"steps": 16, "chunk_size": None},
  "smoothgrad": {"samples": 16, "chunk_size": None},
  "gradcam": {"layer": "l4"},
  "guided_gradcam": {"layer": "l4"},
  "occlusion": {"patch": 8, "stride": 4, "chunk_size": 64},
  "rise": {"num_masks": 1000, "chunk_size": 250},
  "meaningful_perturbation": {"steps": 150, "mask_size": 16},  # a quarter of the side
  "optimized_mask": {"steps": 150, "mask_scale": 4},
}


def gallery_methods(settings=GALLERY_SETTINGS) -> ml_collections.ConfigDict:
  """Every method of ``get_method`` (a new one appears by itself), and the trained masker."""
  from jaxsal import attribution as A

  methods = {name: dict(settings.get(name, {})) for name in A.method_names()}
  methods["masker"] = {}
  return ml_collections.ConfigDict(methods)


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0
  # What the demo runs after training the classifier, in this order (the
  # reconstruction figure uses the gallery's maps); any subset of these.
  c.parts = ("localization", "grid_pointing", "sanity", "gallery", "reconstruction")
  c.classifier = small_cnn_digits.get_config(None)
  c.classifier.num_train_steps = 1000
  c.classifier.eval_every = 500

  c.localization = localization_digits.get_config(None)
  c.localization.maskers = localization_digits.maskers(
    ("ca",), "num_train_steps=400", "eval_every=400", "eval_num_images=200", "checkpoint.every=200"
  )
  c.localization.num_images = 500
  c.localization.center_box_images = 1000
  c.localization.methods = localization_digits.methods(ig_steps=16, smoothgrad_samples=16)

  c.grid_pointing = grid_pointing_digits.get_config(None)
  c.grid_pointing.grid_sizes = (2,)
  c.grid_pointing.num_grids = 48
  c.grid_pointing.num_images = 1000
  c.grid_pointing.methods.integrated_gradients.steps = 16

  c.sanity = sanity_digits.get_config(None)
  c.sanity.modes = ("cascading",)
  c.sanity.num_images = 16
  c.sanity.batch_size = 16
  c.sanity.methods.integrated_gradients.steps = 16
  c.sanity.label_modes = ()

  # Every method on a few held-out images, for the predicted class.
  c.gallery = ml_collections.ConfigDict({"methods": gallery_methods(), "num_images": 6})

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
  # The reconstructions (and the gallery's masker column) reuse
  # localization.maskers[masker_variant]: the demo sets reconstruction.masker to it.
  r.masker_variant = "ca"
  om = reconstruction_digits.methods().optimized_mask
  om.steps = 150
  om.mask_scale = 4
  r.methods = {
    "optimized_mask": om.to_dict(),
    "masker": {},
    "gradient": {},
    "integrated_gradients": {"steps": 16, "chunk_size": None},
    "random_pixels": {},
    "random_blobs": {},
  }
  r.areas = (0.1,)
  r.num_images = 100
  r.seeds = (0,)
  r.num_samples = 4
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
    c.gallery.methods = gallery_methods(
      {
        **GALLERY_SETTINGS,
        "integrated_gradients": {"steps": 4, "chunk_size": None},
        "smoothgrad": {"samples": 4, "chunk_size": None},
        "rise": {"num_masks": 32, "chunk_size": 32},
        "meaningful_perturbation": {"steps": 4, "mask_size": 8},
        "optimized_mask": {"steps": 4, "mask_scale": 4},
      }
    )
    c.reconstruction = reconstruction_digits.get_config("test")
    c.reconstruction.methods = {"masker": {}, "random_pixels": {}}
    c.reconstruction.seeds = (0,)
    c.reconstruction.areas = (0.1,)
    c.reconstruction.localization = False
    c.reconstruction.figure_images = 2
  else:
    raise ValueError(f"unknown variant {arg!r} of demo_digits; known: cpu, test")
  return c
