"""Weakly supervised localisation on cluttered_digits: maskers against baselines.

Every masker variant of ``masker_digits`` named in ``maskers`` is trained
(or reused) in ``<workdir>/maskers/<variant>`` on the classifier in the
workdir; they, the centre-box baseline and the gradient methods are scored
with LE, OM, F1, F1a, SM, PxAP and mean mask area on the test split.

Variants (``localization_digits:ARG``):
  (none) / ``cpu``: every masker variant, all 4000 test images.
  ``test``: the tiny test classifier and masker, 32 images; for tests.
"""

import ml_collections

from jaxsal.configs import masker_digits, small_cnn_digits

METHODS = (
  "gradient",
  "gradient_x_input",
  "integrated_gradients",
  "smoothgrad",
  "guided_backprop",
  "gradcam",
)
MASKERS = ("ca", "fix", "ca_in", "ca_out", "ca_fewshot", "fix_fewshot", "ca_pool")


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.classifier = small_cnn_digits.get_config(None)
  c.maskers = MASKERS
  # Overrides applied to every masker config, e.g. ("num_train_steps=500",).
  c.masker_overrides = ()
  c.methods = METHODS
  c.center_box = True
  # Training images whose mean box size the centre box takes.
  c.center_box_images = 2000
  c.num_images = 4000
  c.batch_size = 100
  c.ig_steps = 32
  c.smoothgrad_samples = 25
  c.gradcam_layer = "l4"

  if arg in (None, "", "cpu"):
    pass
  elif arg == "test":
    c.classifier = small_cnn_digits.get_config("test")
    c.maskers = ("test",)
    c.methods = ("gradient", "gradcam")
    c.center_box_images = 64
    c.num_images = 32
    c.batch_size = 16
    c.ig_steps = 4
    c.smoothgrad_samples = 4
  else:
    raise ValueError(f"unknown variant {arg!r} of localization_digits; known: cpu, test")
  return c


def masker_config(variant, classifier):
  """The masker config of one variant, on this experiment's classifier."""
  m = masker_digits.get_config(variant)
  m.classifier = classifier
  return m
