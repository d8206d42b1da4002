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

METHODS = (
  "optimized_mask",
  "masker",
  "random_pixels",
  "random_blobs",
  "gradient",
  "gradient_x_input",
  "integrated_gradients",
  "smoothgrad",
  "guided_backprop",
  "gradcam",
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
  c.masker_overrides = ()
  c.methods = METHODS
  c.areas = (0.05, 0.1, 0.2)
  c.num_images = 300
  c.batch_size = 100
  c.num_samples = 8
  c.seeds = (0, 1, 2)
  c.optimized_mask = ml_collections.ConfigDict(
    {
      "steps": 300,
      "learning_rate": 0.1,
      "mask_scale": 8,
      "lam_area": 1e-4,
      "lam_tv": 1e-2,
      "tv_beta": 3.0,
      "substrate": "blur",
      "blur_sigma": 5.0,
    }
  )
  # Random blobs: uniform noise on a grid of 1/blob_scale of the side, upsampled.
  c.blob_scale = 8
  c.ig_steps = 32
  c.smoothgrad_samples = 25
  c.gradcam_layer = "l4"
  # Also score the optimised mask with the localisation metrics.
  c.localization = True

  if arg in (None, "", "cpu"):
    pass
  elif arg == "test":
    c.classifier = small_cnn_digits.get_config("test")
    c.generator = generator_digits.get_config("test")
    c.masker_variant = "test"
    c.methods = ("optimized_mask", "masker", "random_pixels", "gradient")
    c.areas = (0.1, 0.3)
    c.num_images = 8
    c.batch_size = 8
    c.num_samples = 2
    c.seeds = (0, 1)
    c.optimized_mask.steps = 3
    c.optimized_mask.mask_scale = 4
    c.ig_steps = 4
    c.smoothgrad_samples = 2
  else:
    raise ValueError(f"unknown variant {arg!r} of reconstruction_digits; known: cpu, test")
  return c


def masker_config(variant, classifier):
  """The masker config of one variant, on this experiment's classifier."""
  m = masker_digits.get_config(variant)
  m.classifier = classifier
  return m
