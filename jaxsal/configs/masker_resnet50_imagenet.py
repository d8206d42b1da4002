"""A masker on ResNet-50 on ImageNet (Phang, Park & Geras 2020), for accelerators.

The paper's recipe: the masker on taps l3 and l4, mask at 1/4 of 224x224;
Adam 1e-3 (grad-norm clip 10, L2 weight decay 1e-4) for the masker and, under
CA, SGD 1e-3 (momentum 0.9, weight decay 1e-4) for the classifier, both x0.1
every 20 of 60 epochs of 20% of the training set; global batch 72; FIX
lam_out 10, CA lam_out 15. The classifier is read from
``classifier_workdir`` (a ``resnet50_imagenet`` workdir); ImageNet must be
prepared by tfds as array_record beforehand. ImageNet has no box or mask
feature in tfds, so the localisation evaluation during training is skipped
(evaluate with the boxes separately).

Variants (``masker_resnet50_imagenet:ARG``):
  ``ca`` (default), ``fix``.
  ``cpu``: ResNet-50 on cluttered_digits at 32x32 for a few steps, so the
    same code path runs without ImageNet or an accelerator.
"""

from jaxsal.configs import masker_digits, resnet50_imagenet

IMAGENET_TRAIN_IMAGES = resnet50_imagenet.IMAGENET_TRAIN_IMAGES


def get_config(arg=None):
  c = masker_digits.get_config("ca")
  c.classifier = resnet50_imagenet.get_config(None)
  c.masker.layers = ("l3", "l4")
  c.batch_size = 72
  c.num_train_steps = int(60 * 0.2 * IMAGENET_TRAIN_IMAGES) // c.batch_size
  c.log_every = 100
  c.eval_every = 10_000
  c.checkpoint.every = 2000
  c.checkpoint.keep = 3

  if arg in (None, "", "ca"):
    pass
  elif arg == "fix":
    c.mode = "fix"
    c.objective.lam_out = 10.0
  elif arg == "cpu":
    c.classifier = resnet50_imagenet.get_config("cpu")
    c.batch_size = 8
    c.num_train_steps = 2
    c.log_every = 1
    c.eval_every = 2
    c.eval_num_images = 16
    c.eval_batch_size = 8
    c.checkpoint.every = 2
  else:
    raise ValueError(f"unknown variant {arg!r} of masker_resnet50_imagenet; known: ca, fix, cpu")
  return c
