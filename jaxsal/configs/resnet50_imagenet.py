"""ResNet-50 on ImageNet (tfds ``imagenet2012``), for accelerators.

The recipe is the usual one for data-parallel ResNet-50: SGD with Nesterov
momentum 0.9, learning rate 0.1 per 256 images with 5 warm-up epochs and a
cosine decay, weight decay 1e-4, 90 epochs, global batch 1024. ImageNet must
have been downloaded and prepared by tfds beforehand (it cannot be fetched
automatically).

Variants (``resnet50_imagenet:ARG``):
  (none): the full recipe.
  ``cpu``: ResNet-50 on cluttered_digits at 64x64 for a few steps, so the
    same code path runs on a machine without ImageNet or an accelerator.
"""

import ml_collections
from ml_collections import config_dict

IMAGENET_TRAIN_IMAGES = 1_281_167


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.model = ml_collections.ConfigDict({"name": "resnet50", "kwargs": {}})
  c.dataset = ml_collections.ConfigDict()
  c.dataset.name = "imagenet2012"
  c.dataset.config = config_dict.placeholder(str)
  c.dataset.train_split = "train"
  c.dataset.eval_split = "validation"
  c.dataset.data_dir = config_dict.placeholder(str)
  c.dataset.image_size = 224
  c.dataset.mean = (0.485, 0.456, 0.406)
  c.dataset.std = (0.229, 0.224, 0.225)
  c.dataset.label_randomization = "none"

  c.batch_size = 1024
  epochs = 90
  steps_per_epoch = IMAGENET_TRAIN_IMAGES // c.batch_size
  c.num_train_steps = epochs * steps_per_epoch
  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.1 * c.batch_size / 256
  c.optimizer.momentum = 0.9
  c.optimizer.nesterov = True
  c.optimizer.weight_decay = 1e-4
  c.optimizer.schedule = "cosine"
  c.optimizer.warmup_steps = 5 * steps_per_epoch
  c.optimizer.decay_every_steps = 0
  c.optimizer.decay_factor = 0.1
  c.optimizer.grad_clip_norm = 0.0

  c.log_every = 100
  c.eval_every = steps_per_epoch
  c.eval_batch_size = 1000
  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every = 1000
  c.checkpoint.keep = 3
  c.checkpoint.use_async = True
  c.checkpoint.restore_step = -1
  c.mesh = ml_collections.ConfigDict({"shape": {"data": -1}, "num_devices": 0})
  c.distributed = "auto"

  if arg in (None, ""):
    pass
  elif arg == "cpu":
    c.dataset.name = "cluttered_digits"
    c.dataset.config = "small"
    c.dataset.eval_split = "test"
    c.dataset.mean = (0.0,)
    c.dataset.std = (1.0,)
    c.batch_size = 16
    c.num_train_steps = 4
    c.optimizer.learning_rate = 0.01
    c.optimizer.warmup_steps = 1
    c.log_every = 1
    c.eval_every = 4
    c.eval_batch_size = 32
    c.checkpoint.every = 4
  else:
    raise ValueError(f"unknown variant {arg!r} of resnet50_imagenet; known: cpu")
  return c
