"""Reconstructions of salient inputs on cluttered_digits (our reading of Thakur & Fischmeister 2020).

For each test image and each explanation, the top ``area`` of its pixels are
kept and the rest is sampled from the inpainting VAE in
``generator_workdir``; the table reports how often the classifier keeps its
decision on those reconstructions, per method and area, mean and spread over
``seeds``. Random masks of the same area are the floor.

Variants (``reconstruction_digits:ARG``):
  (none) / ``cpu``: 300 test images, areas 5/10/20%, 8 samples, 3 seeds.
  ``test``: the tiny test classifier, masker and generator; for tests.
"""

import ml_collections

from jaxsal.configs import generator_digits, masker_digits, small_cnn_digits


def methods(ig_steps: int = 32, smoothgrad_samples: int = 25) -> ml_collections.ConfigDict:
  """``{name: hyperparameters}``: any of ``get_method``'s, and the experiment's own rows.

  ``masker`` (the trained masker's mask), ``random_pixels`` and
  ``random_blobs`` (the floors) are computed by the experiment itself.
  """
  return ml_collections.ConfigDict(
    {
      "optimized_mask": {
        "steps": 300,
        "learning_rate": 0.1,
        "mask_scale": 8,
        "lam_area": 1e-4,
        "lam_tv": 1e-2,
        "tv_beta": 3.0,
        "substrate": "blur",
        "blur_sigma": 5.0,
      },
      "masker": {},
      "random_pixels": {},
      "random_blobs": {},
      "gradient": {},
      "gradient_x_input": {},
      "integrated_gradients": {"steps": ig_steps, "chunk_size": None},
      "smoothgrad": {"samples": smoothgrad_samples, "chunk_size": None},
      "guided_backprop": {},
      "gradcam": {"layer": "l4"},
    }
  )


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.classifier = small_cnn_digits.get_config(None)
  c.generator = generator_digits.get_config(None)
  # '' means <workdir>/generator. It must hold a trained generator
  # (`jaxsal train-generator`): the experiment does not train one.
  c.generator_workdir = ""
  # The masker variant of masker_digits, trained (or reused) in
  # <workdir>/maskers/<variant>.
  c.masker_variant = "ca"
  c.masker = masker_digits.get_config("ca")
  c.methods = methods()
  c.areas = (0.05, 0.1, 0.2)
  c.num_images = 300
  c.batch_size = 100
  c.num_samples = 8
  c.seeds = (0, 1, 2)
  # Random blobs: uniform noise on a grid of 1/blob_scale of the side, upsampled.
  c.blob_scale = 8
  # Also score the optimised mask with the localisation metrics.
  c.localization = True

  if arg in (None, "", "cpu"):
    pass
  elif arg == "test":
    c.classifier = small_cnn_digits.get_config("test")
    c.generator = generator_digits.get_config("test")
    c.masker_variant = "test"
    c.masker = masker_digits.get_config("test")
    m = methods()
    m.optimized_mask.steps = 3
    m.optimized_mask.mask_scale = 4
    c.methods = {
      "optimized_mask": m.optimized_mask.to_dict(),
      "masker": {},
      "random_pixels": {},
      "gradient": {},
    }
    c.areas = (0.1, 0.3)
    c.num_images = 8
    c.batch_size = 8
    c.num_samples = 2
    c.seeds = (0, 1)
  else:
    raise ValueError(f"unknown variant {arg!r} of reconstruction_digits; known: cpu, test")
  return c
