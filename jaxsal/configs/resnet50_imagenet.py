"""ResNet-50 on ImageNet (tfds ``imagenet2012``), for accelerators.

The recipe is the usual one for data-parallel ResNet-50: SGD with Nesterov
momentum 0.9, learning rate 0.1 per 256 images with 5 warm-up epochs and a
cosine decay, weight decay 1e-4, 90 epochs, global batch 1024. ImageNet must
have been prepared by tfds as array_record beforehand (it cannot be fetched
automatically).

Variants (``resnet50_imagenet:ARG``):
  (none): the full recipe.
  ``cpu``: ResNet-50 on cluttered_digits at 32x32 for a few steps, so the
    same code path runs on a machine without ImageNet or an accelerator.
"""

from jaxsal.configs._common import classifier_config

IMAGENET_TRAIN_IMAGES = 1_281_167


def get_config(arg=None):
  c = classifier_config(model="resnet50", dataset="imagenet2012")
  c.dataset.eval_split = "validation"
  c.dataset.image_size = 224
  c.dataset.mean = (0.485, 0.456, 0.406)
  c.dataset.std = (0.229, 0.224, 0.225)

  c.batch_size = 1024
  steps_per_epoch = IMAGENET_TRAIN_IMAGES // c.batch_size
  c.num_train_steps = 90 * steps_per_epoch
  c.optimizer.learning_rate = 0.1 * c.batch_size / 256
  c.optimizer.weight_decay = 1e-4
  c.optimizer.warmup_steps = 5 * steps_per_epoch

  c.log_every = 100
  c.eval_every = steps_per_epoch
  c.eval_batch_size = 1000
  c.checkpoint.every = 1000

  if arg in (None, ""):
    pass
  elif arg == "cpu":
    c.dataset.name = "cluttered_digits"
    c.dataset.config = "small"
    c.dataset.eval_split = "test"
    c.dataset.image_size = 0
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
