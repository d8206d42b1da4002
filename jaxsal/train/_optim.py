"""Optimizers and learning-rate schedules from a config."""

from __future__ import annotations

import optax

from jaxsal._checks import check_choice

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "step")


def make_schedule(cfg, total_steps: int) -> optax.Schedule:
  """The learning-rate schedule of an optimizer config.

  ``constant``, ``cosine`` (to zero at ``total_steps``) or ``step`` (times
  ``decay_factor`` every ``decay_every_steps``), each after a linear warm-up of
  ``warmup_steps``.
  """
  check_choice(cfg.schedule, "optimizer.schedule", SCHEDULES)
  lr, warm = float(cfg.learning_rate), int(cfg.warmup_steps)
  if cfg.schedule == "constant":
    main = optax.constant_schedule(lr)
  elif cfg.schedule == "cosine":
    main = optax.cosine_decay_schedule(lr, max(total_steps - warm, 1))
  else:
    if int(cfg.decay_every_steps) <= 0:
      raise ValueError(
        "optimizer.schedule='step' needs optimizer.decay_every_steps > 0; "
        f"got {cfg.decay_every_steps}"
      )
    main = optax.exponential_decay(
      lr, int(cfg.decay_every_steps), float(cfg.decay_factor), staircase=True
    )
  if warm <= 0:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warm), main], [warm])


def make_optimizer(cfg, total_steps: int) -> optax.GradientTransformation:
  """An optax optimizer from ``cfg`` (name, learning_rate, momentum, weight_decay, ...).

  Weight decay is decoupled (added to the update) for ``adamw`` and L2-style
  (added to the gradient, as PyTorch's SGD and Adam do) for ``sgd`` and
  ``adam``, so that the paper's PyTorch hyperparameters mean the same here.
  """
  check_choice(cfg.name, "optimizer.name", OPTIMIZERS)
  schedule = make_schedule(cfg, total_steps)
  chain = []
  if float(cfg.grad_clip_norm) > 0:
    chain.append(optax.clip_by_global_norm(float(cfg.grad_clip_norm)))
  wd = float(cfg.weight_decay)
  if cfg.name == "adamw":
    chain.append(optax.adamw(schedule, weight_decay=wd))
  else:
    if wd > 0:
      chain.append(optax.add_decayed_weights(wd))
    if cfg.name == "adam":
      chain.append(optax.adam(schedule))
    else:
      chain.append(
        optax.sgd(schedule, momentum=float(cfg.momentum) or None, nesterov=bool(cfg.nesterov))
      )
  return optax.chain(*chain)
