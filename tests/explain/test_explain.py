"""``jaxsal explain``: known maps written for image files, and clear refusals that leave nothing."""

import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
skimage_data = pytest.importorskip("skimage.data")

from jaxsal import attribution as A
from jaxsal import cli, explain, train

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLES = os.path.dirname(skimage_data.__file__)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
  from safetensors.numpy import save_file

  spec = importlib.util.spec_from_file_location(
    "_torch_resnet", os.path.join(ROOT, "benchmarks", "_torch_resnet.py")
  )
  tr = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(tr)
  net = tr.build("resnet18", num_classes=12, seed=2)
  path = str(tmp_path_factory.mktemp("w") / "r18.safetensors")
  save_file({k: np.ascontiguousarray(v.numpy()) for k, v in net.state_dict().items()}, path)
  return path


def _images(tmp_path):
  folder = tmp_path / "imgs"
  folder.mkdir()
  for name in ("coffee.png", "astronaut.png"):
    (folder / name).write_bytes(open(os.path.join(SAMPLES, name), "rb").read())
  (folder / "notes.txt").write_text("not an image, and not a PNG/JPEG name: skipped")
  return [os.path.join(SAMPLES, "chelsea.png"), str(folder)]


def test_explain_writes_the_maps_it_says_and_they_are_the_methods_maps(tmp_path, weights, capsys):
  out = tmp_path / "out"
  rc = cli.main(
    [
      "explain",
      *_images(tmp_path),
      "--model",
      f"resnet18:{weights}",
      "--methods",
      "gradient",
      "gradcam",
      "--size",
      "32",
      "--out",
      str(out),
    ]
  )
  assert rc == 0
  summary = json.load(open(out / "explain.json"))
  names = [im["name"] for im in summary["images"]]
  assert names == ["chelsea", "astronaut", "coffee"]
  for f in summary["files"]:
    assert os.path.isfile(out / f), f
  assert len(summary["files"]) == 3 * 2 * 2 + 2  # npy + png per image and method, grid, json
  assert f"wrote {len(summary['files'])} files to {out}" in capsys.readouterr().out
  # The saved gradient is the gradient of the predicted class at the model's view of the file.
  m = explain.load_model(f"resnet18:{weights}", size=32)
  view = m.view(explain.read_image(os.path.join(SAMPLES, "chelsea.png")))
  x = jnp.asarray(m.normalize(view[None]))
  logits = jax.jit(m.apply_fn)(m.params, x)  # jitted: eager ResNet ops compile one by one
  pred = int(jnp.argmax(logits[0]))
  assert summary["images"][0]["predicted"] == summary["images"][0]["explained"] == pred
  grad = jax.jit(lambda p, x, t: A.gradient(m.apply_fn, p, x, t))
  expected = np.asarray(grad(m.params, x, jnp.asarray([pred])))[0]
  got = np.load(out / "images" / "chelsea" / "gradient.npy")
  assert got.shape == (32, 32, 3) and np.abs(expected).max() > 0
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())


def test_target_all_gives_every_class_map(tmp_path, weights):
  out = tmp_path / "all"
  res = explain.explain(
    [os.path.join(SAMPLES, "coffee.png")],
    f"resnet18:{weights}",
    ["gradient"],
    out=str(out),
    target="all",
    size=32,
    progress=False,
  )
  maps = np.load(out / "images" / "coffee" / "gradient.npy")
  assert maps.shape == (12, 32, 32, 3) and res["images"][0]["explained"] == "all"
  m = explain.load_model(f"resnet18:{weights}", size=32)
  x = jnp.asarray(
    m.normalize(m.view(explain.read_image(os.path.join(SAMPLES, "coffee.png")))[None])
  )
  grad = jax.jit(lambda p, x, t: A.gradient(m.apply_fn, p, x, t))
  np.testing.assert_allclose(
    maps[5], np.asarray(grad(m.params, x, jnp.asarray([5])))[0], rtol=1e-4, atol=1e-7
  )


def test_class_relevant_and_noisy_maps_are_the_methods_maps(tmp_path, weights, capsys):
  out = tmp_path / "cr"
  chelsea = os.path.join(SAMPLES, "chelsea.png")
  rc = cli.main(
    [
      "explain",
      chelsea,
      os.path.join(SAMPLES, "coffee.png"),
      "--model",
      f"resnet18:{weights}",
      "--size",
      "32",
      "--methods",
      "cgi",
      "var",
      "smoothgrad",
      "--param",
      "smoothgrad.samples=3",
      "--batch-size",
      "2",
      "--out",
      str(out),
    ]
  )
  assert rc == 0
  summary = json.load(open(out / "explain.json"))
  assert summary["params"]["cgi"] == {"chunk_size": None}
  assert summary["params"]["smoothgrad"]["samples"] == 3
  printed = capsys.readouterr().out
  pred = summary["images"][0]["predicted"]
  assert f"explained class {pred} ({summary['images'][0]['predicted_name']})" in printed
  m = explain.load_model(f"resnet18:{weights}", size=32)
  x = jnp.asarray(m.normalize(m.view(explain.read_image(chelsea))[None]))
  t = jnp.asarray([pred])
  key = jax.random.fold_in(jax.random.key(0), 0)[None]  # image 0 of the files, seed 0
  # Jitted, as explain is: CGI's winner at a near tie can differ between jit and eager.
  expected = jax.jit(
    lambda p, x, t, key: {
      "cgi": A.cgi(m.apply_fn, p, x, t),
      "var": A.var(A.gradient_x_input)(m.apply_fn, p, x, t),
      "smoothgrad": A.smoothgrad(A.gradient, samples=3)(m.apply_fn, p, x, t, key=key),
    }
  )(m.params, x, t, key)
  for name, e in expected.items():
    e = np.asarray(e)[0]
    got = np.load(out / "images" / "chelsea" / f"{name}.npy")
    assert np.abs(e).max() > 0, name
    np.testing.assert_allclose(got, e, rtol=1e-4, atol=1e-5 * np.abs(e).max(), err_msg=name)
  # Batch size 1 gives the same noisy maps as batch size 2: the keys follow the files.
  out1 = tmp_path / "cr1"
  explain.explain(
    [chelsea, os.path.join(SAMPLES, "coffee.png")],
    m,
    ["smoothgrad"],
    out=str(out1),
    params=["smoothgrad.samples=3"],
    batch_size=1,
    progress=False,
  )
  np.testing.assert_allclose(
    np.load(out1 / "images" / "coffee" / "smoothgrad.npy"),
    np.load(out / "images" / "coffee" / "smoothgrad.npy"),
    rtol=1e-5,
    atol=1e-7,
  )


def test_target_all_with_cgi_gives_each_class_its_cgi_map(tmp_path, weights):
  out = tmp_path / "allcgi"
  coffee = os.path.join(SAMPLES, "coffee.png")
  explain.explain(
    [coffee], f"resnet18:{weights}", ["cgi"], out=str(out), target="all", size=32, progress=False
  )
  maps = np.load(out / "images" / "coffee" / "cgi.npy")
  m = explain.load_model(f"resnet18:{weights}", size=32)
  x = jnp.asarray(m.normalize(m.view(explain.read_image(coffee))[None]))
  assert maps.shape == (12, 32, 32, 3)
  cgi = jax.jit(lambda p, x, t: A.cgi(m.apply_fn, p, x, t))
  for c in (0, 7):
    e = np.asarray(cgi(m.params, x, jnp.asarray([c])))[0]
    np.testing.assert_allclose(maps[c], e, rtol=1e-4, atol=1e-6 * max(np.abs(e).max(), 1e-6))
  assert np.abs(maps).max() > 0


def _fails(tmp_path, capsys, argv, message):
  out = tmp_path / "never"
  assert cli.main(["explain", *argv, "--out", str(out)]) == 2
  err = capsys.readouterr().err
  assert message in err, err
  assert not out.exists()
  assert not [p for p in os.listdir(tmp_path) if p.startswith(".jaxsal-explain-")]
  return err


def test_bad_input_is_refused_clearly_and_nothing_is_written(tmp_path, weights, capsys):
  chelsea = os.path.join(SAMPLES, "chelsea.png")
  model = ["--model", f"resnet18:{weights}", "--size", "32"]
  (tmp_path / "fake.png").write_text("this is text")
  _fails(
    tmp_path,
    capsys,
    [str(tmp_path / "fake.png"), *model],
    f"{str(tmp_path / 'fake.png')!r} is not an image that PIL can read",
  )
  (tmp_path / "empty").mkdir()
  _fails(tmp_path, capsys, [str(tmp_path / "empty"), *model], "has no images (.png, .jpg, .jpeg")
  err = _fails(
    tmp_path,
    capsys,
    [chelsea, *model, "--methods", "gradient", "saliency_magic"],
    "unknown method 'saliency_magic'; known methods: cgi, deconvnet, gradcam, gradient,",
  )
  assert "integrated_gradients" in err and "optimized_mask" in err and "var" in err
  _fails(
    tmp_path,
    capsys,
    [chelsea, *model, "--methods", "gradient", "--param", "gradient.steps=4"],
    "param gradient.steps: 'gradient' takes no 'steps'; it takes: nothing",
  )
  _fails(
    tmp_path,
    capsys,
    [chelsea, *model, "--methods", "gradient", "--param", "integrated_gradients.steps=4"],
    "'integrated_gradients' is not among the methods asked for (gradient)",
  )
  _fails(
    tmp_path,
    capsys,
    [chelsea, *model, "--param", "steps=4"],
    "param 'steps=4': expected METHOD.NAME=VALUE",
  )
  _fails(
    tmp_path,
    capsys,
    [chelsea, *model, "--target", "12"],
    "target must be a class index in [0, 12); got 12",
  )
  # A weights file with a key missing and one extra: both named.
  from safetensors.numpy import load_file, save_file

  sd = load_file(weights)
  del sd["layer2.1.bn1.running_var"]
  sd["classifier.weight"] = np.zeros((2, 2), np.float32)
  save_file(sd, str(tmp_path / "bad.safetensors"))
  _fails(
    tmp_path,
    capsys,
    [chelsea, "--model", f"resnet18:{tmp_path / 'bad.safetensors'}"],
    "missing keys (1): layer2.1.bn1.running_var; unexpected keys (1): classifier.weight",
  )
  _fails(
    tmp_path,
    capsys,
    [chelsea, "--model", f"vgg16:{weights}"],
    "ARCH:FILE needs ARCH in resnet18, resnet34, resnet50; got 'vgg16'",
  )


def test_a_workdir_whose_checkpoint_is_of_another_model_is_refused(tmp_path, capsys):
  from jaxsal import configs

  work = tmp_path / "clf"
  (work / "checkpoints").mkdir(parents=True)
  cfg = configs.get_config("small_cnn_digits:test")
  (work / "config.json").write_text(cfg.to_json())
  ckpt = train.Checkpoints(str(work / "checkpoints"), every=1, keep=1, use_async=False)
  ckpt.save(1, {"w": jnp.zeros(2)}, meta={"model": "resnet18", "num_classes": 10}, force=True)
  ckpt.close()
  assert jax.device_count() >= 1
  err = _fails(
    tmp_path, capsys, [os.path.join(SAMPLES, "chelsea.png"), "--model", str(work)], "jaxsal: error:"
  )
  assert "resnet18" in err and "small_cnn" in err
  with pytest.raises(FileNotFoundError, match="no trained classifier in"):
    train.load_classifier(str(tmp_path / "nothing"))
