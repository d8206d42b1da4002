"""The inpainting VAE of cluttered_digits: the generative model reconstructions sample from.

A convolutional VAE conditioned on the kept pixels and the mask
(``jaxsal.models.vae``), trained on random masks keeping up to half of each
image, with Adam 1e-3 and a cosine schedule. Images are the dataset's, in
``[0, 1]`` (the small CNN's inputs too: its mean is 0 and std 1).

Variants (``generator_digits:ARG``):
  (none) / ``cpu``: 3000 steps of batch 64.
  ``test``: a tiny model on the 32x32 ``small`` canvases, a few steps; for tests.
"""

import ml_collections
from ml_collections import config_dict


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.dataset = ml_collections.ConfigDict(
    {
      "name": "cluttered_digits",
      "config": config_dict.placeholder(str),
      "data_dir": config_dict.placeholder(str),
      "train_split": "train",
      "eval_split": "test",
    }
  )
  c.model = ml_collections.ConfigDict({"latent_dim": 32, "widths": (16, 32, 64)})
  # Training masks keep a fraction U(0, max_area) of each image.
  c.max_area = 0.5
  # Nats per latent dimension the KL is counted as at least (0: plain ELBO).
  # Without it the decoder, which sees the kept pixels, learnt to ignore z
  # (the KL fell to 0.0 within 400 steps) and every sample was the same.
  c.free_bits = 0.5
  c.batch_size = 64
  c.num_train_steps = 3000
  c.optimizer = ml_collections.ConfigDict(
    {
      "name": "adam",
      "learning_rate": 1e-3,
      "momentum": 0.0,
      "nesterov": False,
      "weight_decay": 0.0,
      "schedule": "cosine",
      "warmup_steps": 100,
      "decay_every_steps": 0,
      "decay_factor": 0.1,
      "grad_clip_norm": 100.0,
    }
  )
  c.log_every = 50
  c.eval_every = 1000
  c.eval_num_images = 1000
  c.eval_batch_size = 100
  c.checkpoint = ml_collections.ConfigDict(
    {"every": 500, "keep": 2, "use_async": True, "restore_step": -1}
  )
  c.mesh = ml_collections.ConfigDict({"shape": {"data": -1}, "num_devices": 0})
  c.distributed = "auto"

  if arg in (None, "", "cpu"):
    pass
  elif arg == "test":
    c.dataset.config = "small"
    c.model.latent_dim = 4
    c.model.widths = (4, 8)
    c.batch_size = 8
    c.num_train_steps = 6
    c.log_every = 2
    c.eval_every = 3
    c.eval_num_images = 16
    c.eval_batch_size = 8
    c.checkpoint.every = 2
    c.checkpoint.use_async = False
  else:
    raise ValueError(f"unknown variant {arg!r} of generator_digits; known: cpu, test")
  return c
