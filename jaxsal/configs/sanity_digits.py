"""Model-randomisation sanity checks of the small CNN on cluttered_digits.

The classifier is ``small_cnn_digits`` (trained into the workdir, or reused
from it). Every layer is a stage, in the order the model uses them; each
stage's maps of ``num_images`` test images are compared with the trained
model's. The data randomisation test retrains the classifier on permuted
and on uniformly drawn labels of 2000 training images until it has
memorised them, and compares its maps with the trained model's.

Variants (``sanity_digits:ARG``):
  (none) / ``cpu``: 64 test images, every method, IG with 32 steps.
  ``test``: the ``small_cnn_digits:test`` classifier, 4 images, 2 methods.
"""

import ml_collections

from jaxsal.configs import small_cnn_digits


def methods(ig_steps: int = 32, layer: str = "l4") -> ml_collections.ConfigDict:
  """``{name: hyperparameters}`` of the methods checked (any of ``get_method``'s)."""
  return ml_collections.ConfigDict(
    {
      "gradient": {},
      "gradient_x_input": {},
      "integrated_gradients": {"steps": ig_steps, "chunk_size": None},
      "guided_backprop": {},
      "gradcam": {"layer": layer},
      "guided_gradcam": {"layer": layer},
      "cgi": {"chunk_size": None},
    }
  )


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.classifier = small_cnn_digits.get_config(None)
  c.methods = methods()
  c.modes = ("cascading", "independent")
  c.num_images = 64
  c.batch_size = 16
  c.hog_pixels_per_cell = 16  # the paper's; maps need 3 cells a side
  # Data randomisation: the classifier retrained on randomised labels. It must
  # memorise them, so it sees a subset of the training set for longer.
  c.label_modes = ("permute", "uniform")
  c.random_classifier = small_cnn_digits.get_config(None)
  c.random_classifier.dataset.train_split = "train[:2000]"
  c.random_classifier.num_train_steps = 3000
  c.random_classifier.eval_every = 1000
  c.random_classifier.checkpoint.every = 1000

  if arg in (None, "", "cpu"):
    pass
  elif arg == "test":
    c.classifier = small_cnn_digits.get_config("test")
    c.methods = {"gradient": {}, "gradcam": {"layer": "l4"}}
    c.num_images = 4
    c.batch_size = 4
    c.hog_pixels_per_cell = 8
    c.label_modes = ()
    c.random_classifier = small_cnn_digits.get_config("test")
  else:
    raise ValueError(f"unknown variant {arg!r} of sanity_digits; known: cpu, test")
  return c
