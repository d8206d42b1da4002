"""Optimizers and learning-rate schedules from a config."""

from __future__ import annotations

import optax

from jaxsal._checks import check_bool, check_choice, check_number

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "step")


def check_optimizer_config(cfg, prefix: str = "optimizer") -> None:
  """Checks an optimizer config's names and numbers; errors name ``<prefix>.<key>``.

  Raises:
    ValueError: an unknown name or schedule, a learning rate that is not a
      number > 0, a momentum outside [0, 1), a negative weight decay, warm-up,
      decay interval or clipping norm, or a decay factor outside (0, 1].

  Example:
    >>> import ml_collections
    >>> from jaxsal.configs import masker_digits
    >>> cfg = masker_digits.get_config("test").masker_optimizer
    >>> check_optimizer_config(cfg, "masker_optimizer")
    >>> cfg.learning_rate = -1e-3
    >>> check_optimizer_config(cfg, "masker_optimizer")
    Traceback (most recent call last):
    ...
    ValueError: masker_optimizer.learning_rate must be a number > 0; got -0.001
  """
  check_choice(cfg.name, f"{prefix}.name", OPTIMIZERS)
  check_choice(cfg.schedule, f"{prefix}.schedule", SCHEDULES)
  check_number(cfg.learning_rate, f"{prefix}.learning_rate", low=0.0, low_open=True)
  check_number(cfg.get("momentum", 0.0), f"{prefix}.momentum", low=0.0, high=1.0, high_open=True)
  check_number(cfg.get("weight_decay", 0.0), f"{prefix}.weight_decay", low=0.0)
  check_number(cfg.get("grad_clip_norm", 0.0), f"{prefix}.grad_clip_norm", low=0.0)
  check_number(
    cfg.get("decay_factor", 0.1), f"{prefix}.decay_factor", low=0.0, high=1.0, low_open=True
  )
  for key in ("warmup_steps", "decay_every_steps"):
    value = cfg.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
      raise ValueError(f"{prefix}.{key} must be an integer >= 0; got {value!r}")
  check_bool(cfg.get("nesterov", False), f"{prefix}.nesterov")


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
