"""The grid pointing game on cluttered_digits: base methods alone, with CGI and with VAR.

The classifier is ``small_cnn_digits`` (trained into the workdir, or reused
from it). Grids of n x n test digits of distinct classes, each classified
correctly with probability >= ``min_confidence`` on its own, are explained
for every cell's class; the model runs on the whole grid (it is fully
convolutional with global average pooling), as in the B-cos protocol.

Variants (``grid_pointing_digits:ARG``):
  (none) / ``cpu``: 2x2 and 3x3 grids, 200 of each, IG with 32 steps.
  ``test``: the ``small_cnn_digits:test`` classifier, a few 2x2 grids; for tests.
"""

import ml_collections

from jaxsal.configs import small_cnn_digits


def methods(ig_steps: int = 32, layer: str = "l4") -> ml_collections.ConfigDict:
  """``{name: hyperparameters}`` of the methods the game compares (any of ``get_method``'s)."""
  return ml_collections.ConfigDict(
    {
      "gradient": {},
      "gradient_x_input": {},
      "integrated_gradients": {"steps": ig_steps, "chunk_size": None},
      "guided_backprop": {},
      "gradcam": {"layer": layer},
    }
  )


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.classifier = small_cnn_digits.get_config(None)
  c.grid_sizes = (2, 3)
  c.num_grids = 200
  # Grids are drawn from the first `num_images` test images that pass the filter.
  c.num_images = 4000
  # Only digits classified correctly with this probability enter grids; the
  # tiny test classifier is too weak for any filter.
  c.confidence_filter = True
  c.min_confidence = 0.9
  c.methods = methods()
  c.temperature = 10.0
  c.tau = 0.1  # the official code's tau for given class sets
  c.smooth = 0  # odd average-pooling window before scoring; 0: none
  c.batch_size = 8  # grids per compiled call

  if arg in (None, "", "cpu"):
    pass
  elif arg == "test":
    c.classifier = small_cnn_digits.get_config("test")
    c.grid_sizes = (2,)
    c.num_grids = 4
    c.num_images = 200
    c.confidence_filter = False
    c.methods.integrated_gradients.steps = 4
    c.batch_size = 4
  else:
    raise ValueError(f"unknown variant {arg!r} of grid_pointing_digits; known: cpu, test")
  return c
