"""``jaxsal train-generator``: the inpainting VAE that reconstructions sample from.

Example:
  >>> from jaxsal import configs
  >>> from jaxsal.experiments import train_generator
  >>> train_generator.validate(configs.get_config("generator_digits:test"))
"""

from __future__ import annotations

import time
from typing import Any

COMMAND = "train-generator"
HELP = "train the inpainting VAE that reconstructions of salient inputs sample from"
DEFAULT_CONFIG = "generator_digits"
CONFIG_HELP = "a generator config (generator_digits[:test]) or a .py path"
WORKDIR_HELP = (
  "checkpoints, metrics.jsonl and generator.json go here; rerun to resume (the reconstruction "
  "experiment reads <classifier workdir>/generator)"
)
SET_EXAMPLE = "num_train_steps=500"


def validate(config) -> None:
  """Checks a generator config (see ``jaxsal.train.validate_generator_config``)."""
  from jaxsal import train

  train.validate_generator_config(config)


def run(config, workdir: str, *, progress: bool = True) -> dict[str, Any]:
  """Trains the generator in ``workdir`` (resuming from its checkpoints) and evaluates it.

  Returns:
    ``jaxsal.train.train_generator``'s result, with ``seconds``.
  """
  from jaxsal import train

  t0 = time.perf_counter()
  out = dict(train.train_generator(config, workdir, progress=progress))
  out["seconds"] = time.perf_counter() - t0
  return out


def summary(result: dict[str, Any]) -> str:
  """One line: the step reached, the test -ELBO and its parts, the workdir."""
  ev = result["eval"]
  return (
    f"jaxsal: trained the inpainting VAE to step {int(result['state'].step)} in "
    f"{result['seconds']:.1f}s; on {ev['count']} test images with random masks: "
    f"-ELBO {ev['loss']:.1f} nats/image (NLL {ev['nll']:.1f}, KL {ev['kl']:.1f}); "
    f"workdir {result['workdir']}"
  )
