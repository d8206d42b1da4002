"""A masker on the small CNN of cluttered_digits (Phang, Park & Geras 2020, scaled to a CPU).

The classifier is ``small_cnn_digits``, read from ``classifier_workdir``
(trained there first if it holds no checkpoint). The paper's recipe is kept
(Adam 1e-3 for the masker with grad-norm clip 10 and L2 weight decay 1e-4;
SGD 1e-3, momentum 0.9, weight decay 1e-4 for the classifier under CA; both
x0.1 at a third and two thirds of training; mask at 1/4 resolution), with
fewer steps and a smaller batch than ImageNet needs.

Variants (``masker_digits:ARG``):
  ``ca`` (default): classifier alongside, both objectives, lam_out 15.
  ``fix``: fixed classifier, both objectives, lam_out 10.
  ``ca_in`` / ``ca_out``: CA with the mask-in or the mask-out objective only.
  ``ca_fewshot`` / ``fix_fewshot``: CA or FIX trained on 10 training images
    per class.
  ``ca_pool``: CA with a pool of 10 past classifiers (our extension).
  ``test``: the ``small_cnn_digits:test`` classifier, a few steps; for tests.
"""

import ml_collections

from jaxsal.configs import small_cnn_digits

VARIANTS = ("ca", "fix", "ca_in", "ca_out", "ca_fewshot", "fix_fewshot", "ca_pool", "test")


def _optimizer(name, lr, momentum=0.0):
  return ml_collections.ConfigDict(
    {
      "name": name,
      "learning_rate": lr,
      "momentum": momentum,
      "nesterov": False,
      "weight_decay": 1e-4,
      "schedule": "step",
      "warmup_steps": 0,
      # 0: decay x0.1 at a third and at two thirds of training (the paper:
      # every 20 of 60 epochs).
      "decay_every_steps": 0,
      "decay_factor": 0.1,
      "grad_clip_norm": 10.0 if name == "adam" else 0.0,
    }
  )


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.classifier = small_cnn_digits.get_config(None)
  # '' means <workdir>/classifier.
  c.classifier_workdir = ""
  c.mode = "ca"  # 'ca' (classifier alongside) or 'fix'
  c.masker = ml_collections.ConfigDict(
    {
      # The small CNN's l3 and l4 are both 1/16 of the input (4x4 on 64x64
      # canvases); l1 and l2 add the resolution a 16x16 mask can use.
      "layers": ("l1", "l2", "l3", "l4"),
      "hidden": 64,
      "mask_scale": 4,
      "gumbel": False,
      "temperature": 0.1,
    }
  )
  c.objective = ml_collections.ConfigDict(
    {
      "name": "both",
      "lam_in": 1.0,
      "lam_out": 15.0,
      "lam_tv": 1e-3,
      "tv_counted_twice": True,
      "infill": "constant",
      "blur_sigma": 20.0,
    }
  )
  c.historic_prob = 0.5  # CA: chance of skipping the masked classifier step
  c.pool_size = 0  # our extension: a pool of past classifiers (0: off)
  c.pool_every = 100
  c.few_shot = 0  # k images per class (0: the whole training split)
  c.batch_size = 64
  c.num_train_steps = 1500
  c.masker_optimizer = _optimizer("adam", 1e-3)
  c.classifier_optimizer = _optimizer("sgd", 1e-3, momentum=0.9)
  c.log_every = 50
  c.eval_every = 500
  c.eval_num_images = 1000  # test images in the evaluations during training
  c.eval_batch_size = 100
  c.checkpoint = ml_collections.ConfigDict(
    {"every": 250, "keep": 2, "use_async": True, "restore_step": -1}
  )
  c.mesh = ml_collections.ConfigDict({"shape": {"data": -1}, "num_devices": 0})
  c.distributed = "auto"

  if arg in (None, "", "ca"):
    pass
  elif arg == "fix":
    c.mode = "fix"
    c.objective.lam_out = 10.0
  elif arg == "ca_in":
    c.objective.name = "in"
  elif arg == "ca_out":
    c.objective.name = "out"
  elif arg == "ca_fewshot":
    c.few_shot = 10
  elif arg == "fix_fewshot":
    c.mode = "fix"
    c.objective.lam_out = 10.0
    c.few_shot = 10
  elif arg == "ca_pool":
    c.pool_size = 10
  elif arg == "test":
    c.classifier = small_cnn_digits.get_config("test")
    c.batch_size = 16
    c.num_train_steps = 6
    c.log_every = 1
    c.eval_every = 6
    c.eval_num_images = 32
    c.eval_batch_size = 16
    c.checkpoint.every = 2
    c.pool_every = 2
  else:
    raise ValueError(f"unknown variant {arg!r} of masker_digits; known: {', '.join(VARIANTS)}")
  return c
