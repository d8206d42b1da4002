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

MASKERS = ("ca", "fix", "ca_in", "ca_out", "ca_fewshot", "fix_fewshot", "ca_pool")


def methods(ig_steps: int = 32, smoothgrad_samples: int = 25) -> ml_collections.ConfigDict:
  """``{name: hyperparameters}`` of the attribution methods scored (any of ``get_method``'s)."""
  return ml_collections.ConfigDict(
    {
      "gradient": {},
      "gradient_x_input": {},
      "integrated_gradients": {"steps": ig_steps, "chunk_size": None},
      "smoothgrad": {"samples": smoothgrad_samples, "chunk_size": None},
      "guided_backprop": {},
      "gradcam": {"layer": "l4"},
    }
  )


def maskers(variants, *overrides: str) -> ml_collections.ConfigDict:
  """``{variant: masker config}`` of ``masker_digits`` variants, each with ``overrides`` applied.

  The experiment gives every masker its own classifier (and workdir) when it runs.
  """
  from jaxsal.configs import apply_overrides

  return ml_collections.ConfigDict(
    {v: apply_overrides(masker_digits.get_config(v), list(overrides)).to_dict() for v in variants}
  )


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.classifier = small_cnn_digits.get_config(None)
  # {variant: masker config}, each trained in <workdir>/maskers/<variant> on
  # this experiment's classifier: --set maskers.ca.num_train_steps=500.
  c.maskers = maskers(MASKERS)
  c.methods = methods()
  c.center_box = True
  # Training images whose mean box size the centre box takes.
  c.center_box_images = 2000
  c.num_images = 4000
  c.batch_size = 100

  if arg in (None, "", "cpu"):
    pass
  elif arg == "test":
    c.classifier = small_cnn_digits.get_config("test")
    c.maskers = maskers(("test",))
    c.methods = {"gradient": {}, "gradcam": {"layer": "l4"}}
    c.center_box_images = 64
    c.num_images = 32
    c.batch_size = 16
  else:
    raise ValueError(f"unknown variant {arg!r} of localization_digits; known: cpu, test")
  return c
