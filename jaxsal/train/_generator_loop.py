"""Training the inpainting VAE that reconstructions sample from, and loading it back.

The config is checked before anything is written; the VAE's state, step,
evaluation and ``generator.json`` go to ``_setup.run_training`` (replicated
parameters, the batch sharded over ``data``, checkpoints, resume), and
``load_generator`` reads it back with ``_setup.restore_on_host``. Each step's training masks and reparameterisation noise come
from ``fold_in(key(seed), step)``, so 1 and 8 devices take the same steps.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxsal import parallel
from jaxsal._checks import check_positive_int
from jaxsal.train._optim import make_optimizer
from jaxsal.train._runner import write_eval
from jaxsal.train._setup import (
  Run,
  Task,
  check_run_config,
  load_sources,
  restore_on_host,
  run_training,
)
from jaxsal.train._workdir import plain


@flax.struct.dataclass
class GeneratorState:
  """The VAE's step, parameters and optimizer state."""

  step: jax.Array
  params: Any
  opt_state: Any


def validate_generator_config(config) -> None:
  """Checks a generator config before anything runs.

  Raises:
    ValueError: an unknown dataset, a non-positive size or count, a
      ``max_area`` outside ``(0, 1]``, or a bad optimizer setting
      (``check_optimizer_config``).
  """
  from jaxsal import data
  from jaxsal._checks import check_choice

  check_choice(config.dataset.name, "dataset.name", data.DATASETS)
  check_run_config(config, ("eval_num_images",))
  check_positive_int(config.model.latent_dim, "model.latent_dim")
  if not config.model.widths:
    raise ValueError("model.widths must name at least one stage width; got ()")
  for w in config.model.widths:
    check_positive_int(w, "model.widths[i]")
  if isinstance(config.free_bits, bool) or not float(config.free_bits) >= 0:
    raise ValueError(f"free_bits must be a number >= 0; got {config.free_bits!r}")
  if not 0.0 < float(config.max_area) <= 1.0:
    raise ValueError(f"max_area must be in (0, 1]; got {config.max_area!r}")
  from jaxsal.train._optim import check_optimizer_config

  check_optimizer_config(config.optimizer, "optimizer")


def _module(model_cfg, channels: int):
  from jaxsal.models.vae import InpaintingVAE

  return InpaintingVAE(
    latent_dim=int(model_cfg["latent_dim"]),
    widths=tuple(int(w) for w in model_cfg["widths"]),
    channels=int(channels),
  )


def _init_state(module, tx, key, image_shape) -> GeneratorState:
  x = jnp.zeros((1,) + tuple(image_shape), jnp.float32)
  m = jnp.ones((1,) + tuple(image_shape[:2]) + (1,), jnp.float32)
  params = module.init(key, x, m, key)["params"]
  return GeneratorState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


def make_generator_step(
  module, tx: optax.GradientTransformation, *, seed: int, max_area: float, free_bits: float = 0.0
):
  """The pure ``step(state, batch) -> (state, metrics)`` of the inpainting VAE.

  ``batch['image']`` is ``[B, H, W, C]`` in ``[0, 1]``. The masks (see
  ``models.vae.random_masks``) and the latent noise are drawn from
  ``fold_in(key(seed), step)`` over the global batch.
  """
  from jaxsal.models.vae import random_masks, vae_loss

  def step(state: GeneratorState, batch: dict):
    x = batch["image"]
    k_mask, k_z = jax.random.split(jax.random.fold_in(jax.random.key(seed), state.step))
    mask = random_masks(k_mask, x.shape[0], x.shape[1], x.shape[2], max_area=max_area)

    def loss_fn(params):
      logits, mu, logvar = module.apply({"params": params}, x, mask, k_z)
      return vae_loss(logits, mu, logvar, x, free_bits=free_bits)

    (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {
      "loss": parts["nll"] + parts["kl"],
      **parts,
      "mask_area": jnp.mean(mask),
      "grad_norm": optax.tree.norm(grads),
    }
    return GeneratorState(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return step


def _eval_sums(module, *, seed: int, max_area: float):
  """The jitted per-batch sums of the negative ELBO's parts, with fixed masks (compiled once)."""
  from jaxsal.models.vae import random_masks, vae_loss

  @jax.jit
  def sums(params, x, valid, i):
    k = jax.random.fold_in(jax.random.key(seed + 1), i)
    mask = random_masks(k, x.shape[0], x.shape[1], x.shape[2], max_area=max_area)
    logits, mu, logvar = module.apply({"params": params}, x, mask, jax.random.fold_in(k, 1))
    _, per = jax.vmap(lambda l, m, v, xx: vae_loss(l[None], m[None], v[None], xx[None]))(
      logits, mu, logvar, x
    )
    return {k: jnp.sum(v * valid) for k, v in per.items()}

  return sums


def _evaluate(sums, params, source, *, num_images: int, batch_size: int, mesh) -> dict[str, float]:
  """The negative ELBO (and its parts) on the first ``num_images`` of ``source``, fixed masks.

  The images are split over the mesh's data axis, each process reading its
  share; the batch is rounded up to a multiple of the axis' width.
  """
  from jaxsal import data

  n = min(num_images, len(source))
  width = mesh.shape[parallel.DATA_AXIS]
  batch_size = -(-int(batch_size) // width) * width
  totals = None
  for i, b in enumerate(data.eval_batches(source, batch_size=batch_size, num_examples=n)):
    g = parallel.shard_batch({"x": b["image"], "valid": b["valid"]}, mesh)
    out = sums(params, g["x"], g["valid"], i)
    totals = out if totals is None else jax.tree.map(lambda a, c: a + c, totals, out)
  totals = jax.device_get(totals)
  res = {k: float(totals[k]) / n for k in ("nll", "kl")}
  res["loss"] = res["nll"] + res["kl"]
  res["count"] = n
  return res


def train_generator(config, workdir: str, *, progress: bool = True) -> dict[str, Any]:
  """Trains the inpainting VAE as ``config`` says, checkpointing into ``workdir``.

  Args:
    config: a generator config (see ``jaxsal.configs.generator_digits``).
    workdir: where checkpoints, ``metrics.jsonl``, ``config.json`` and
      ``eval.json`` go; training resumes from its latest checkpoint.
    progress: progress bars on the first host.

  Returns:
    A dict with ``generator`` (the ``models.vae.Generator`` that
    ``load_generator(workdir)`` returns, parameters on the host), ``state``,
    ``history``, ``eval`` (negative ELBO in nats per image on test images
    with fixed random masks), ``restored_step``, ``mesh`` and ``workdir``.

  Raises:
    ValueError: a bad config or an unwritable workdir, before anything is written.

  Example:
    >>> import tempfile
    >>> from jaxsal import configs, train
    >>> out = train.train_generator(
    ...     configs.get_config('generator_digits:test'), tempfile.mkdtemp(), progress=False)
    >>> out['eval']['loss'] > 0
    True
  """
  validate_generator_config(config)
  return run_training(config, workdir, _generator_task(config), progress=progress)


def _generator_task(config) -> Task:
  """The VAE's part of ``run_training``: its state, step, evaluation and ``generator.json``."""
  from jaxsal.models.vae import Generator

  train_source, eval_source = load_sources(config.dataset)
  image_shape = tuple(np.asarray(train_source[0]["image"]).shape)
  stride = 2 ** (len(config.model.widths) + 1)
  if image_shape[0] % stride or image_shape[1] % stride:
    raise ValueError(
      f"the {image_shape[0]}x{image_shape[1]} images must be multiples of "
      f"2 ** (len(model.widths) + 1) = {stride}"
    )

  def build(mesh, workdir: str) -> Run:
    module = _module(config.model, image_shape[-1])
    tx = make_optimizer(config.optimizer, int(config.num_train_steps))
    max_area = float(config.max_area)
    sums = _eval_sums(module, seed=int(config.seed), max_area=max_area)
    meta = {
      "kind": "generator",
      "latent_dim": int(config.model.latent_dim),
      "widths": [int(w) for w in config.model.widths],
      "image_shape": list(image_shape),
    }

    def finish(out: dict) -> dict:
      result = write_eval(out["workdir"], out["eval"])
      return {
        **out,
        "eval": result,
        "generator": Generator(module, jax.device_get(out["state"].params)),
      }

    return Run(
      init=lambda k: _init_state(module, tx, k, image_shape),
      init_args=(),
      step=make_generator_step(
        module, tx, seed=int(config.seed), max_area=max_area, free_bits=float(config.free_bits)
      ),
      evaluate=lambda st: _evaluate(
        sums,
        st.params,
        eval_source,
        num_images=int(config.eval_num_images),
        batch_size=int(config.eval_batch_size),
        mesh=mesh,
      ),
      meta=meta,
      expect=("kind", "latent_dim", "widths", "image_shape"),
      finish=finish,
      files={"generator.json": meta},
    )

  return Task(
    desc="generator",
    what="generator",
    source=train_source,
    host_batch=lambda raw: {"image": np.asarray(raw["image"], np.float32)},
    build=build,
    identity=plain(
      {
        "kind": "generator",
        "model": plain(config.model),
        "dataset": config.dataset.name,
        "dataset.config": config.dataset.get("config", None),
        "dataset.train_split": config.dataset.train_split,
        "image_shape": list(image_shape),
        "optimizer": plain(config.optimizer),
        "seed": int(config.seed),
        "batch_size": int(config.batch_size),
        "max_area": float(config.max_area),
        "free_bits": float(config.free_bits),
      }
    ),
    postfix=lambda m: {"nll": f"{m['train_nll']:.1f}", "kl": f"{m['train_kl']:.1f}"},
    eval_line=lambda done, ev: (
      f"step {done}: test -ELBO {ev['loss']:.1f} nats/image "
      f"(NLL {ev['nll']:.1f}, KL {ev['kl']:.1f}; {ev['count']} images)"
    ),
  )


def load_generator(workdir: str):
  """The trained ``models.vae.Generator`` in ``workdir`` (its latest checkpoint), on the host.

  Args:
    workdir: a directory written by ``jaxsal train-generator``
      (``generator.json``, ``config.json`` and ``checkpoints/``).

  Returns:
    A ``jaxsal.models.vae.Generator`` (the module and its parameters).

  Raises:
    FileNotFoundError: ``workdir`` holds no trained generator (the message
      names the path and says how to train one).
    jaxsal.train.CheckpointError: the checkpoint is not a generator's.

  Example:
    >>> load_generator('/nonexistent/gen')  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: no generative model in '/nonexistent/gen' ...
  """
  from jaxsal.models.vae import Generator

  def target(files: dict):
    meta = files["generator.json"]
    config = ml_collections.ConfigDict(files["config.json"])
    shape = tuple(meta["image_shape"])
    module = _module(meta, shape[-1])
    # The optimizer of the run, so that the checkpoint's tree matches.
    tx = make_optimizer(config.optimizer, int(config.num_train_steps))
    abstract = jax.eval_shape(lambda k: _init_state(module, tx, k, shape), jax.random.key(0))
    return abstract, {"kind": "generator"}, module

  state, module = restore_on_host(
    workdir,
    what="generative model",
    how=f"train one first: jaxsal train-generator --config generator_digits --workdir {workdir}",
    files=("generator.json", "config.json"),
    target=target,
    kind="generator",
  )
  return Generator(module, state.params)
