"""The inpainting VAE's training: resume, 1 == 8 devices, loading it back, bad configs."""

import json
import os
import shutil

import jax
import numpy as np
import optax
import pytest

from jaxsal import attribution as A
from jaxsal import configs, parallel, train
from jaxsal.models import vae


def _config(data_dir, *overrides):
  return configs.apply_overrides(
    configs.get_config("generator_digits:test"),
    [f"dataset.data_dir={data_dir}", "checkpoint.keep=3", *overrides],
  )


def test_rerun_after_losing_the_last_checkpoint_resumes_to_the_same_parameters(data_dir, tmp_path):
  c = _config(data_dir)
  work = str(tmp_path / "gen")
  full = train.train_generator(c, work, progress=False)
  assert sorted(int(d) for d in os.listdir(os.path.join(work, "checkpoints"))) == [2, 4, 6]
  final = jax.device_get(full["state"].params)
  assert np.isfinite(full["eval"]["loss"]) and full["eval"]["count"] == 16
  # As if killed between the checkpoints of steps 4 and 6.
  shutil.rmtree(os.path.join(work, "checkpoints", "6"))
  again = train.train_generator(c, work, progress=False)
  assert again["restored_step"] == 4 and int(again["state"].step) == 6
  jax.tree.map(np.testing.assert_array_equal, final, jax.device_get(again["state"].params))
  steps = [
    json.loads(l)["step"]
    for l in open(os.path.join(work, "metrics.jsonl"))
    if json.loads(l)["kind"] == "train"
  ]
  assert steps == [2, 4, 6]
  assert again["eval"] == full["eval"]
  # What reconstructions use is the same network.
  gen = train.load_generator(work)
  jax.tree.map(np.testing.assert_array_equal, final, gen.params)
  x = np.zeros((2, 32, 32, 1), np.float32)
  samples = A.reconstruct(
    gen,
    x,
    np.ones((2, 32, 32), np.float32) * (np.arange(32) < 16)[:, None],
    key=jax.random.key(0),
    num_samples=2,
  )
  np.testing.assert_array_equal(samples[:, :, :16], 0.0)  # the kept half is the input's


def test_one_and_eight_devices_take_the_same_steps():
  module = vae.InpaintingVAE(latent_dim=3, widths=(4, 8), channels=1)
  tx = optax.adam(1e-2)
  x = jax.random.uniform(jax.random.key(5), (8, 16, 16, 1))

  def run(mesh):
    repl = parallel.replicated(mesh)
    state = jax.jit(
      lambda k: train._generator_loop._init_state(module, tx, k, (16, 16, 1)), out_shardings=repl
    )(jax.random.key(0))
    step = jax.jit(
      train.make_generator_step(module, tx, seed=0, max_area=0.5),
      in_shardings=(repl, parallel.batch_sharding(mesh)),
      out_shardings=(repl, repl),
    )
    losses = []
    for _ in range(3):
      state, m = step(state, parallel.shard_batch({"image": x}, mesh))
      losses.append(float(m["loss"]))
    return state, losses

  s1, l1 = run(parallel.make_mesh(devices=jax.devices()[:1]))
  s8, l8 = run(parallel.make_mesh())
  np.testing.assert_allclose(l1, l8, rtol=1e-5)
  assert l1[0] != l1[1]
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
    jax.device_get(s1.params),
    jax.device_get(s8.params),
  )
  leaf = jax.tree.leaves(s8.params)[0]
  assert len(leaf.sharding.device_set) == 8 and leaf.sharding.is_fully_replicated


def test_no_generator_yet_and_bad_configs_are_clear_errors(data_dir, tmp_path):
  with pytest.raises(
    FileNotFoundError,
    match="no generative model in .*; train one first: "
    "jaxsal train-generator --config generator_digits",
  ):
    train.load_generator(str(tmp_path / "nothing"))
  for override, message in [
    ("max_area=0.0", r"max_area must be in \(0, 1\]; got 0.0"),
    ("num_train_steps=0", "num_train_steps must be a positive integer"),
    (
      "model.widths=(4, 8, 16, 32, 64)",
      r"the 32x32 images must be multiples of "
      r"2 \*\* \(len\(model.widths\) \+ 1\) = 64",
    ),
    ("free_bits=-1.0", "free_bits must be a number >= 0; got -1.0"),
  ]:
    work = tmp_path / "bad"
    with pytest.raises(ValueError, match=message):
      train.train_generator(_config(data_dir, override), str(work), progress=False)
    assert not work.exists()
