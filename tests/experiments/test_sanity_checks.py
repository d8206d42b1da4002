"""The model-randomisation runner on a tiny model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsal import attribution as A
from jaxsal import configs, models, sanity
from jaxsal.experiments import sanity_checks


def test_config_variants_validate():
  for spec in ("sanity_digits", "sanity_digits:test"):
    sanity_checks.validate(configs.get_config(spec))
  c = configs.get_config("sanity_digits:test")
  for override, match in (
    ("methods=('lrp',)", "unknown method 'lrp'"),
    ("modes=('cascade',)", "unknown mode 'cascade'"),
    ("num_images=0", "num_images must be a positive integer"),
    ("label_modes=('shuffle',)", "unknown label mode 'shuffle'"),
  ):
    with pytest.raises(ValueError, match=match):
      sanity_checks.validate(configs.apply_overrides(c, [override]))


def test_results_are_the_similarity_of_each_stage_to_the_trained_maps(tmp_path):
  model = models.SmallCNN(num_classes=5, widths=(4, 4, 4, 4, 4))
  apply_fn, params = models.from_linen(
    model, models.init_model(model, jax.random.key(0), (1, 48, 48, 1))
  )
  images = np.asarray(jax.random.uniform(jax.random.key(1), (3, 48, 48, 1)))
  key = jax.random.key(4)
  res = sanity_checks.model_randomization(
    apply_fn,
    params,
    images,
    methods={"gradient": (A.gradient, {})},
    key=key,
    batch_size=2,
    keep=2,
    progress=False,
  )
  layers = ["conv0", "conv1", "conv2", "conv3", "conv4", "head"]
  assert res["layers"] == layers and res["stages"]["cascading"] == layers[::-1]
  x = jnp.asarray(images)
  explain = jax.jit(lambda p: A.gradient(apply_fn, p, x, jnp.argmax(apply_fn(p, x), -1)))
  similarity = jax.jit(sanity.similarity)
  trained = explain(params)
  for mode in ("cascading", "independent"):
    stages = sanity.randomize(params, key, layers=layers, mode=mode)
    for s in (0, 4):
      want = similarity(trained, explain(stages[s]))
      for metric in sanity.MEASURES:
        got = res["results"][mode]["gradient"][metric]
        np.testing.assert_allclose(got["mean"][s], np.nanmean(want[metric]), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got["std"][s], np.nanstd(want[metric]), rtol=1e-3, atol=1e-5)
    assert res["examples"][mode]["gradient"].shape == (len(layers) + 1, 2, 48, 48)
  paths = sanity_checks.write(res, str(tmp_path / "out"))
  for path in paths.values():
    with open(path, "rb") as f:
      head = f.read(8)
    assert head.startswith(b"\x89PNG") or head.startswith(b"{")
  assert "cascading: spearman_abs" in sanity_checks.format_table(res)


def test_memorization_is_the_accuracy_on_the_randomised_training_labels(data_dir):
  from jaxsal import data, train

  c = configs.apply_overrides(
    configs.get_config("small_cnn_digits:test"),
    [
      f"dataset.data_dir={data_dir!r}",
      "dataset.train_split='train[:300]'",
      "dataset.label_randomization='uniform'",
    ],
  )
  model = models.SmallCNN(num_classes=10, widths=(4, 4, 4, 4, 4))
  apply_fn, params = models.from_linen(
    model, models.init_model(model, jax.random.key(0), (1, 32, 32, 1))
  )
  got = sanity_checks.memorization(apply_fn, params, c, batch_size=128)
  src = data.load_source("cluttered_digits", "train[:300]", config="small", data_dir=data_dir)
  labels = train.RandomLabelSource(src, "uniform", num_classes=10, seed=c.seed).labels
  x = np.stack([np.asarray(src[i]["image"]) for i in range(300)]).astype(np.float32) / 255.0
  pred = np.asarray(jnp.argmax(apply_fn(params, jnp.asarray(x)), -1))
  assert got == pytest.approx(float((pred == labels).mean()))


def test_data_table_lists_every_method_and_the_memorisation():
  r = {m: {"mean": 0.5, "std": 0.1} for m in sanity.MEASURES}
  res = {
    "data_randomization": {
      "permute": {"memorized": 0.987, "test_accuracy": 0.1, "results": {"gradient": r, "cgi": r}}
    }
  }
  table = sanity_checks.format_data_table(res)
  assert "permute labels; random labels fitted: 0.987" in table
  assert table.count("0.50 ± 0.10") == 2 * len(sanity.MEASURES)


def test_data_randomization_compares_each_random_label_model_with_the_trained_one(monkeypatch):
  model = models.SmallCNN(num_classes=5, widths=(4, 4, 4, 4, 4))
  init = lambda seed: models.init_model(model, jax.random.key(seed), (1, 48, 48, 1))
  apply_fn, params = models.from_linen(model, init(0))
  randoms = {
    "permute": models.from_linen(model, init(1)),
    "uniform": models.from_linen(model, init(2)),
  }
  trained_dirs = []

  def fake_classifier(c, workdir, progress=True):
    trained_dirs.append(workdir)
    f, p = randoms[c.dataset.label_randomization]
    return f, p, {"accuracy": 0.1, "mesh": None, "seconds": 0.0}

  from jaxsal.experiments import _common

  monkeypatch.setattr(_common, "trained_classifier", fake_classifier)
  monkeypatch.setattr(sanity_checks, "memorization", lambda f, p, c: 0.99)
  c = configs.apply_overrides(
    configs.get_config("sanity_digits:test"),
    [
      "label_modes=('permute', 'uniform')",
      "methods=('gradient',)",
      "batch_size=2",
      "hog_pixels_per_cell=16",
    ],
  )
  c.random_classifier = configs.get_config("small_cnn_digits:test")
  images = np.asarray(jax.random.uniform(jax.random.key(3), (3, 48, 48, 1)))
  out = sanity_checks.data_randomization(c, "/w", apply_fn, params, images, progress=False)
  assert trained_dirs == ["/w/random_labels_permute", "/w/random_labels_uniform"]
  x = jnp.asarray(images)
  explain = lambda f, p: A.gradient(f, p, x, jnp.argmax(f(p, x), -1))
  for mode, (f, p) in randoms.items():
    want = jax.jit(sanity.similarity)(explain(apply_fn, params), explain(f, p))
    assert out[mode]["memorized"] == 0.99 and out[mode]["test_accuracy"] == 0.1
    for metric in sanity.MEASURES:
      np.testing.assert_allclose(
        out[mode]["results"]["gradient"][metric]["mean"],
        np.nanmean(want[metric]),
        rtol=1e-4,
        atol=1e-5,
      )
