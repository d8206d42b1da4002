"""``jaxsal demo``: every part runs on one classifier, and the report holds what the parts computed."""

import base64
import io
import json
import re
import shutil

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxsal import attribution as A
from jaxsal import cli, configs, data
from jaxsal.configs.demo_digits import GALLERY_METHODS
from jaxsal.experiments import _common
from jaxsal.experiments.sanity_checks import METRICS


def test_demo_report_holds_every_part_with_the_parts_own_numbers(data_dir, test_classifier_workdir,
                                                                 tmp_path, capsys):
  work = tmp_path / "demo"
  shutil.copytree(test_classifier_workdir, work)     # the demo reuses a trained classifier
  overrides = [f"classifier.dataset.data_dir={data_dir}",
               "localization.methods=('gradient',)",
               "grid_pointing.methods=('gradient_x_input',)",
               "sanity.methods=('gradient', 'gradcam')"]
  argv = ["demo", "--config", "demo_digits:test", "--workdir", str(work), "--no-progress"]
  assert cli.main(argv + [a for o in overrides for a in ("--set", o)]) == 0
  out = capsys.readouterr().out
  assert f"jaxsal: report: {work}/report.html (numbers in {work}/metrics.json)" in out
  assert not list(work.rglob("*.tmp"))

  # metrics.json holds each part's own results.
  m = json.loads((work / "metrics.json").read_text())
  assert m["localization"]["rows"] == json.loads((work / "localization.json").read_text())["rows"]
  assert list(m["localization"]["rows"]) == ["masker test", "center box", "gradient"]
  assert m["grid_pointing"]["grids"] == \
      json.loads((work / "grid_pointing.json").read_text())["grids"]
  assert set(m["grid_pointing"]["grids"]["2x2"]) == {"gradient_x_input/alone",
                                                     "gradient_x_input/cgi",
                                                     "gradient_x_input/var"}
  san = json.loads((work / "sanity" / "sanity.json").read_text())["results"]["cascading"]
  for method in ("gradient", "gradcam"):
    for k in METRICS:
      assert m["sanity"]["fully_randomized"][method][k] == san[method][k]["mean"][-1]

  # The gallery: every method; its gradient is the gradient of the predicted class.
  z = np.load(work / "figures" / "gallery_maps.npz")
  assert m["gallery"]["methods"] == list(GALLERY_METHODS)
  assert set(GALLERY_METHODS) <= set(z.files)
  c = configs.apply_overrides(configs.get_config("demo_digits:test"), overrides)
  apply_fn, params, _ = _common.trained_classifier(c.classifier, str(work), progress=False)
  test = data.load_source("cluttered_digits", "test", config="small", data_dir=data_dir)
  raw = np.stack([np.asarray(test[i]["image"]) for i in range(2)])
  x = jnp.asarray(_common.normalize(c.classifier, raw))
  pred = np.asarray(apply_fn(params, x).argmax(-1))
  np.testing.assert_array_equal(z["predicted"], pred)
  np.testing.assert_array_equal(z["labels"], [int(test[i]["label"]) for i in range(2)])
  np.testing.assert_allclose(z["gradient"], np.abs(A.gradient(apply_fn, params, x, pred)).sum(-1),
                             rtol=1e-4, atol=1e-6)
  for name in GALLERY_METHODS:
    assert z[name].shape == (2, 32, 32) and np.isfinite(z[name]).all(), name
    assert z[name].max() > 0, f"{name}: an all-zero map"
  assert 0 <= z["masker"].min() and z["masker"].max() <= 1

  # The report: one self-contained file naming every method, metric and check,
  # its figures PNGs that decode and are not blank.
  html = (work / "report.html").read_text()
  assert "<script" not in html and "http://" not in html and "https://" not in html
  pngs = re.findall(r'<img src="data:image/png;base64,([^"]+)"', html)
  assert len(pngs) == 4                               # gallery, grid, cascade, curves
  for b64 in pngs:
    img = np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("L"), np.float32)
    assert min(img.shape) >= 150 and img.std() > 10
  for name in GALLERY_METHODS:
    assert f"<code>{name}</code>" in html
  for col in ("LE", "OM", "F1", "F1a", "SM", "PxAP"):
    assert f"<th>{col}</th>" in html
  for variant in ("alone", "cgi", "var"):
    assert f"<th>{variant}</th>" in html
  assert "cascading model randomisation" in html
  loc = m["localization"]["rows"]["center box"]
  assert f"{loc['le']:.3f}" in html


@pytest.mark.parametrize("override,match", [
    ("gallery.methods=('lime',)", "unknown gallery.methods 'lime'; known: cgi, deconvnet"),
    ("gallery.num_images=0", "gallery.num_images must be a positive integer; got 0"),
    ("sanity.modes=('independent',)", "sanity.modes must include 'cascading'"),
    ("localization.methods=('lrp',)", "unknown method 'lrp'"),
])
def test_a_bad_demo_config_is_refused_before_anything_is_written(override, match, tmp_path,
                                                                 capsys):
  work = tmp_path / "demo"
  assert cli.main(["demo", "--config", "demo_digits:test", "--workdir", str(work),
                   "--set", override]) == 2
  err = capsys.readouterr().err
  assert err.startswith("jaxsal: error:") and match in err
  assert not work.exists()
