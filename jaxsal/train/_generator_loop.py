"""Training the inpainting VAE that reconstructions sample from, and loading it back.

The same shape as the other loops: the config is checked before anything is
written, the step is jitted with replicated parameters and the batch sharded
over ``data``, orbax checkpoints every ``checkpoint.every`` steps, and a
killed run started again with the same command resumes from the latest
checkpoint. Each step's training masks and reparameterisation noise come
from ``fold_in(key(seed), step)``, so 1 and 8 devices take the same steps.
"""

from __future__ import annotations

import json
import os
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxsal import parallel
from jaxsal._checks import check_positive_int
from jaxsal.train._checkpoint import Checkpoints
from jaxsal.train._logging import MetricWriter
from jaxsal.train._loop import _devices, prepare_workdir
from jaxsal.train._optim import make_optimizer
from jaxsal.train._runner import restore, run_steps, write_config, write_eval


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
      ``max_area`` outside ``(0, 1]``.
  """
  from jaxsal import data
  from jaxsal._checks import check_choice

  check_choice(config.dataset.name, "dataset.name", data.DATASETS)
  for key in (
    "batch_size",
    "num_train_steps",
    "log_every",
    "eval_every",
    "eval_num_images",
    "eval_batch_size",
  ):
    check_positive_int(config[key], key)
  check_positive_int(config.model.latent_dim, "model.latent_dim")
  if not config.model.widths:
    raise ValueError("model.widths must name at least one stage width; got ()")
  for w in config.model.widths:
    check_positive_int(w, "model.widths[i]")
  check_positive_int(config.checkpoint.every, "checkpoint.every")
  check_positive_int(config.checkpoint.keep, "checkpoint.keep")
  if isinstance(config.free_bits, bool) or not float(config.free_bits) >= 0:
    raise ValueError(f"free_bits must be a number >= 0; got {config.free_bits!r}")
  if not 0.0 < float(config.max_area) <= 1.0:
    raise ValueError(f"max_area must be in (0, 1]; got {config.max_area!r}")


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
    metrics = {"loss": parts["nll"] + parts["kl"], **parts, "mask_area": jnp.mean(mask)}
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


def _evaluate(sums, params, source, *, num_images: int, batch_size: int) -> dict[str, float]:
  """The negative ELBO (and its parts) on the first ``num_images`` of ``source``, fixed masks."""
  n = min(num_images, len(source))
  totals = {"nll": 0.0, "kl": 0.0}
  for i, lo in enumerate(range(0, n, batch_size)):
    idx = list(range(lo, min(lo + batch_size, n)))
    x = np.stack([np.asarray(source[j]["image"], np.float32) / 255.0 for j in idx])
    valid = np.ones(batch_size, np.float32)
    if len(idx) < batch_size:
      valid[len(idx) :] = 0
      x = np.concatenate([x, np.zeros((batch_size - len(idx),) + x.shape[1:], np.float32)])
    out = jax.device_get(sums(params, x, valid, i))
    for k in totals:
      totals[k] += float(out[k])
  res = {k: v / n for k, v in totals.items()}
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
    A dict with ``generator`` (a ``models.vae.Generator``), ``state``,
    ``history``, ``eval`` (negative ELBO in nats per image on test images
    with fixed random masks), ``restored_step``, ``mesh`` and ``workdir``.

  Raises:
    ValueError: a bad config or an unwritable workdir, before anything is written.

  Example:
    >>> from jaxsal import configs, train
    >>> out = train.train_generator(configs.get_config('generator_digits:test'), '/tmp/vae')
    >>> out['eval']['loss'] > 0
    True
  """
  from jaxsal import data
  from jaxsal.models.vae import Generator

  validate_generator_config(config)
  d = config.dataset
  train_source = data.load_source(
    d.name, d.train_split, config=d.get("config", None), data_dir=d.get("data_dir", None)
  )
  eval_source = data.load_source(
    d.name, d.eval_split, config=d.get("config", None), data_dir=d.get("data_dir", None)
  )
  image_shape = tuple(np.asarray(train_source[0]["image"]).shape)
  stride = 2 ** (len(config.model.widths) + 1)
  if image_shape[0] % stride or image_shape[1] % stride:
    raise ValueError(
      f"the {image_shape[0]}x{image_shape[1]} images must be multiples of "
      f"2 ** (len(model.widths) + 1) = {stride}"
    )
  mesh = parallel.make_mesh(dict(config.mesh.shape), devices=_devices(config))
  width = mesh.shape[parallel.DATA_AXIS]
  for key in ("batch_size", "eval_batch_size"):
    if config[key] % width:
      raise ValueError(
        f"{key}={config[key]} must be divisible by the {width} devices "
        f"of the mesh's {parallel.DATA_AXIS!r} axis"
      )
  workdir = prepare_workdir(workdir)

  module = _module(config.model, image_shape[-1])
  total = int(config.num_train_steps)
  tx = make_optimizer(config.optimizer, total)
  repl = parallel.replicated(mesh)
  state = jax.jit(lambda k: _init_state(module, tx, k, image_shape), out_shardings=repl)(
    jax.random.key(config.seed)
  )
  is_main = jax.process_index() == 0
  writer = MetricWriter(os.path.join(workdir, "metrics.jsonl"), enabled=is_main)
  ckpt = Checkpoints(
    os.path.join(workdir, "checkpoints"),
    every=config.checkpoint.every,
    keep=config.checkpoint.keep,
    use_async=config.checkpoint.use_async,
  )
  meta = {
    "kind": "generator",
    "latent_dim": int(config.model.latent_dim),
    "widths": [int(w) for w in config.model.widths],
    "image_shape": list(image_shape),
  }
  state, restored_step = restore(
    ckpt,
    state,
    config,
    meta=meta,
    expect=("kind", "latent_dim", "widths", "image_shape"),
    writer=writer,
    what="generator",
  )
  write_config(workdir, config)
  if is_main:
    with open(os.path.join(workdir, "generator.json"), "w") as f:
      json.dump(meta, f, indent=2)

  max_area = float(config.max_area)
  step_fn = jax.jit(
    make_generator_step(
      module, tx, seed=int(config.seed), max_area=max_area, free_bits=float(config.free_bits)
    ),
    in_shardings=(repl, parallel.batch_sharding(mesh)),
    out_shardings=(repl, repl),
    donate_argnums=(0,),
  )
  sums = _eval_sums(module, seed=int(config.seed), max_area=max_area)
  run_eval = lambda st: _evaluate(
    sums,
    st.params,
    eval_source,
    num_images=int(config.eval_num_images),
    batch_size=int(config.eval_batch_size),
  )
  start = int(jax.device_get(state.step))
  batches = data.make_batches(
    train_source,
    batch_size=config.batch_size,
    seed=config.seed,
    shuffle=True,
    num_epochs=None,
    drop_remainder=True,
    start_step=start,
  )
  prepare = lambda raw: parallel.shard_batch({"image": np.asarray(raw["image"], np.float32)}, mesh)
  state, history, last_eval = run_steps(
    state=state,
    step_fn=step_fn,
    batches=batches,
    prepare=prepare,
    start=start,
    total=total,
    log_every=int(config.log_every),
    eval_every=int(config.eval_every),
    writer=writer,
    ckpt=ckpt,
    meta=meta,
    evaluate=run_eval,
    desc="generator",
    progress=progress,
    postfix=lambda m: {"nll": f"{m['train_nll']:.1f}", "kl": f"{m['train_kl']:.1f}"},
    eval_line=lambda done, ev: (
      f"step {done}: test -ELBO {ev['loss']:.1f} nats/image "
      f"(NLL {ev['nll']:.1f}, KL {ev['kl']:.1f}; {ev['count']} images)"
    ),
  )
  result = write_eval(workdir, last_eval)
  return {
    "generator": Generator(module, jax.device_get(state.params)),
    "state": state,
    "history": history,
    "eval": result,
    "restored_step": restored_step,
    "mesh": mesh,
    "workdir": workdir,
  }


def load_generator(workdir: str):
  """The trained ``models.vae.Generator`` in ``workdir`` (its latest checkpoint).

  Raises:
    FileNotFoundError: ``workdir`` holds no trained generator (the message
      says how to train one).
  """
  from jaxsal.models.vae import Generator

  path = os.path.abspath(os.path.expanduser(workdir))
  meta_path = os.path.join(path, "generator.json")
  ckpt_dir = os.path.join(path, "checkpoints")
  how = f"train one first: jaxsal train-generator --config generator_digits --workdir {workdir}"
  if not os.path.isfile(meta_path) or not os.path.isdir(ckpt_dir):
    raise FileNotFoundError(
      f"no generative model in {path!r} (no generator.json and checkpoints there); {how}"
    )
  with open(meta_path) as f:
    meta = json.load(f)
  with open(os.path.join(path, "config.json")) as f:
    config = ml_collections.ConfigDict(json.load(f))
  shape = tuple(meta["image_shape"])
  module = _module(meta, shape[-1])
  # The optimizer of the run, so that the checkpoint's tree matches.
  tx = make_optimizer(config.optimizer, int(config.num_train_steps))
  abstract = jax.eval_shape(lambda k: _init_state(module, tx, k, shape), jax.random.key(0))
  ckpt = Checkpoints(ckpt_dir, every=1, keep=1_000_000, use_async=False)
  try:
    restored = ckpt.restore(abstract, expect_meta={"kind": "generator"})
  finally:
    ckpt.close()
  if restored is None:
    raise FileNotFoundError(
      f"no generative model in {path!r}: it has no finished checkpoint; {how}"
    )
  return Generator(module, restored[0].params)
