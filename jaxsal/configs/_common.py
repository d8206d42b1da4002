"""The entries every classifier config shares, with neutral defaults."""

import ml_collections
from ml_collections import config_dict


def classifier_config(*, model: str, dataset: str) -> ml_collections.ConfigDict:
  """A classifier config with every key the trainer reads; configs override what differs."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.model = ml_collections.ConfigDict({"name": model, "kwargs": {}})
  c.dataset = ml_collections.ConfigDict()
  c.dataset.name = dataset
  c.dataset.config = config_dict.placeholder(str)
  c.dataset.train_split = "train"
  c.dataset.eval_split = "test"
  c.dataset.data_dir = config_dict.placeholder(str)
  # Side length to crop datasets of varying image size to (0: use as stored).
  c.dataset.image_size = 0
  # Per-channel (x - mean) / std applied to images in [0, 1].
  c.dataset.mean = (0.0,)
  c.dataset.std = (1.0,)
  # 'none', or 'permute' / 'uniform' for the data-randomisation sanity check.
  c.dataset.label_randomization = "none"

  c.batch_size = 128
  c.num_train_steps = 1000
  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.1
  c.optimizer.momentum = 0.9
  c.optimizer.nesterov = True
  c.optimizer.weight_decay = 0.0
  c.optimizer.schedule = "cosine"
  c.optimizer.warmup_steps = 0
  c.optimizer.decay_every_steps = 0
  c.optimizer.decay_factor = 0.1
  c.optimizer.grad_clip_norm = 0.0

  c.log_every = 50
  c.eval_every = 500
  c.eval_batch_size = 500
  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every = 500
  c.checkpoint.keep = 3
  c.checkpoint.use_async = True
  c.checkpoint.restore_step = -1  # -1: the latest
  c.mesh = ml_collections.ConfigDict({"shape": {"data": -1}, "num_devices": 0})
  c.distributed = "auto"
  return c
