"""The one training setup: what training returns, the shared restore helper, one validation."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsal import configs, models, train
from jaxsal.train import _loop, _masker_loop
from jaxsal.train._setup import restore_on_host


def _classifier_config(data_dir):
  # The config of the session's ``test_classifier_workdir``, so nothing is trained again.
  return configs.apply_overrides(
    configs.get_config("small_cnn_digits:test"),
    [f"dataset.data_dir={data_dir}", "checkpoint.use_async=False"],
  )


def test_trained_apply_fn_gives_the_logits_of_load_classifier(data_dir, test_classifier_workdir):
  out = train.train_and_evaluate(
    _classifier_config(data_dir), test_classifier_workdir, progress=False
  )
  assert {"state", "eval", "mesh", "workdir", "history", "restored_step"} <= set(out)
  loaded = train.load_classifier(test_classifier_workdir)
  apply_fn, params = models.from_linen(loaded["model"], loaded["variables"])
  # The same parameters, bitwise, on the host.
  jax.tree.map(np.testing.assert_array_equal, out["params"], params)
  assert all(isinstance(a, np.ndarray) for a in jax.tree.leaves(out["params"]))
  x = jax.random.normal(jax.random.key(0), (4,) + loaded["image_shape"])
  np.testing.assert_array_equal(out["apply_fn"](out["params"], x), apply_fn(params, x))
  # Tapped, as CAM methods need it.
  assert hasattr(out["apply_fn"], "with_taps")


def test_missing_workdir_is_one_clear_error_for_both_loaders(tmp_path):
  missing = tmp_path / "nothing"
  for load, what in [
    (train.load_classifier, "no trained classifier"),
    (train.load_generator, "no generative model"),
  ]:
    with pytest.raises(FileNotFoundError, match=f"{what} in '{missing}'.*train one first"):
      load(str(missing))
    assert not missing.exists()  # reading never creates the workdir


def test_workdir_without_a_finished_checkpoint_is_a_clear_error(tmp_path, test_classifier_workdir):
  work = tmp_path / "clf"
  (work / "checkpoints").mkdir(parents=True)
  with open(os.path.join(test_classifier_workdir, "config.json")) as f:
    (work / "config.json").write_text(f.read())
  with pytest.raises(FileNotFoundError, match=f"'{work}': it has no finished checkpoint"):
    train.load_classifier(str(work))


def test_restore_on_host_restores_to_numpy_and_checks_metadata(tmp_path):
  work = tmp_path / "run"
  state = {"step": jnp.asarray(3), "w": jnp.arange(4.0)}
  ckpt = train.Checkpoints(str(work / "checkpoints"), use_async=False)
  ckpt.save(3, state, meta={"kind": "toy"})
  ckpt.close()
  (work / "toy.json").write_text(json.dumps({"n": 4}))

  def target(files):
    n = files["toy.json"]["n"]
    abstract = {
      "step": jax.ShapeDtypeStruct((), jnp.int32),
      "w": jax.ShapeDtypeStruct((n,), jnp.float32),
    }
    return abstract, {"kind": "toy"}, n

  got, extra = restore_on_host(
    str(work), what="toy", how="make one", files=("toy.json",), target=target
  )
  assert extra == 4 and isinstance(got["w"], np.ndarray)
  np.testing.assert_array_equal(got["w"], np.arange(4.0))

  def other(files):
    abstract, _, n = target(files)
    return abstract, {"kind": "generator"}, n

  with pytest.raises(train.CheckpointError, match="kind='toy'.*kind='generator'"):
    restore_on_host(str(work), what="toy", how="make one", files=("toy.json",), target=other)
  with pytest.raises(
    FileNotFoundError, match=r"no toy in .* \(no toy.json, meta.json and checkpoints"
  ):
    restore_on_host(str(work), what="toy", how="", files=("toy.json", "meta.json"), target=target)


def test_masker_validates_its_classifier_once_and_returns_the_modules(
  data_dir, test_classifier_workdir, tmp_path, monkeypatch
):
  calls = []
  real = _loop.validate_config

  def counting(config):
    calls.append(config.model.name)
    return real(config)

  monkeypatch.setattr(_loop, "validate_config", counting)
  monkeypatch.setattr(_masker_loop, "validate_config", counting)
  c = configs.apply_overrides(
    configs.get_config("masker_digits:test"),
    [
      f"classifier.dataset.data_dir={data_dir}",
      f"classifier_workdir={test_classifier_workdir}",
      "checkpoint.use_async=False",
      "num_train_steps=2",
      "eval_num_images=8",
    ],
  )
  out = train.train_masker(c, str(tmp_path / "masker"), progress=False)
  assert calls == ["small_cnn"]
  assert isinstance(out["masker"], models.Masker)
  assert {"state", "eval", "mesh", "workdir", "classifier", "classifier_eval", "original"} <= set(
    out
  )
  apply_fn, params = out["original"]
  loaded = train.load_classifier(test_classifier_workdir)
  jax.tree.map(
    np.testing.assert_array_equal,
    params,
    models.from_linen(loaded["model"], loaded["variables"])[1],
  )
