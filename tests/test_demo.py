"""``jaxsal demo``: every part runs on one classifier, and the report holds what the parts computed."""

import base64
import contextlib
import io
import json
import re
import shutil
import subprocess

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxsal import attribution as A
from jaxsal import cli, configs, data, sanity
from jaxsal.experiments import _common

# The gallery of demo_digits lists every registry method, then the masker.
GALLERY_METHODS = (*A.method_names(), "masker")


@pytest.fixture(scope="module")
def demo_run(data_dir, test_masker_workdir, tmp_path_factory):
  """``jaxsal demo`` at the test size on the session's trained classifier and masker."""
  work = tmp_path_factory.mktemp("demo_run") / "demo"
  shutil.copytree(test_masker_workdir, work)  # the demo reuses a trained classifier and masker
  overrides = [
    f"classifier.dataset.data_dir={data_dir}",
    "localization.methods=('gradient',)",
    "grid_pointing.methods=('gradient_x_input',)",
    "sanity.methods=('gradient',)",
  ]
  argv = ["demo", "--config", "demo_digits:test", "--workdir", str(work), "--no-progress"]
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    status = cli.main(argv + [a for o in overrides for a in ("--set", o)])
  return {"status": status, "out": out.getvalue(), "work": work, "overrides": overrides}


def test_demo_report_holds_every_part_with_the_parts_own_numbers(data_dir, demo_run):
  work, overrides = demo_run["work"], demo_run["overrides"]
  assert demo_run["status"] == 0
  assert f"jaxsal: report: {work}/report.html (numbers in {work}/metrics.json)" in demo_run["out"]
  assert not list(work.rglob("*.tmp"))

  # metrics.json holds each part's own results.
  m = json.loads((work / "metrics.json").read_text())
  assert m["localization"]["rows"] == json.loads((work / "localization.json").read_text())["rows"]
  assert list(m["localization"]["rows"]) == ["masker test", "center box", "gradient"]
  assert (
    m["grid_pointing"]["grids"] == json.loads((work / "grid_pointing.json").read_text())["grids"]
  )
  assert set(m["grid_pointing"]["grids"]["2x2"]) == {
    "gradient_x_input/alone",
    "gradient_x_input/cgi",
    "gradient_x_input/var",
  }
  rec = json.loads((work / "reconstruction.json").read_text())
  assert m["reconstruction"]["rows"] == rec["rows"]
  assert list(rec["rows"]) == ["masker", "random_pixels"]
  for row in rec["rows"].values():
    assert 0 <= row["0.1"]["kept_mean"] <= 1
  assert m["reconstruction"]["generator"]["steps"] == 6
  assert (work / "generator" / "generator.json").is_file()
  assert m["reconstruction"]["example"]["method"] == "optimized_mask"
  san = json.loads((work / "sanity" / "sanity.json").read_text())["results"]["cascading"]
  for method in ("gradient",):
    for k in sanity.MEASURES:
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
  np.testing.assert_allclose(
    z["gradient"], np.abs(A.gradient(apply_fn, params, x, pred)).sum(-1), rtol=1e-4, atol=1e-6
  )
  for name in GALLERY_METHODS:
    assert z[name].shape == (2, 32, 32) and np.isfinite(z[name]).all(), name
    assert z[name].max() > 0, f"{name}: an all-zero map"
  assert z["masker"].min() >= 0 and z["masker"].max() <= 1

  # The report: one self-contained file naming every method, metric and check,
  # its figures PNGs that decode and are not blank.
  html = (work / "report.html").read_text()
  assert "<script" not in html and "http://" not in html and "https://" not in html
  pngs = re.findall(r'<img src="data:image/png;base64,([^"]+)"', html)
  assert len(pngs) == 5  # gallery, grid, cascade, curves, reconstructions
  for b64 in pngs:
    img = np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("L"), np.float32)
    assert min(img.shape) >= 100 and img.std() > 10
  for name in GALLERY_METHODS:
    assert f"<code>{name}</code>" in html
  for col in ("LE", "OM", "F1", "F1a", "SM", "PxAP"):
    assert f"<th>{col}</th>" in html
  for variant in ("alone", "cgi", "var"):
    assert f"<th>{variant}</th>" in html
  assert "cascading model randomisation" in html
  assert "Reconstructions from the salient pixels" in html
  for name in m["reconstruction"]["rows"]:
    assert f"<code>{name}</code>" in html
  loc = m["localization"]["rows"]["center box"]
  assert f"{loc['le']:.3f}" in html


def _screenshot(chromium, html_path, png_path):
  subprocess.run(
    [
      chromium,
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      f"--user-data-dir={png_path.parent / ('profile_' + png_path.stem)}",
      "--hide-scrollbars",
      "--window-size=1280,4000",
      f"--screenshot={png_path}",
      html_path.as_uri(),
    ],
    check=True,
    capture_output=True,
    timeout=120,
  )
  return np.asarray(Image.open(png_path).convert("L"), np.float32)


@pytest.mark.skipif(
  not (shutil.which("chromium") or shutil.which("chromium-browser")),
  reason="no headless Chromium (Debian: apt-get install chromium)",
)
def test_the_report_renders_its_figures_in_a_headless_browser(demo_run, tmp_path):
  """A screenshot of the report against one of the same page with its figures' data removed."""
  chromium = shutil.which("chromium") or shutil.which("chromium-browser")
  report = demo_run["work"] / "report.html"
  html = report.read_text()
  stripped = tmp_path / "stripped.html"
  stripped.write_text(re.sub(r'src="data:image/png;base64,[^"]+"', 'src=""', html))
  shot = _screenshot(chromium, report, tmp_path / "report.png")
  bare = _screenshot(chromium, stripped, tmp_path / "bare.png")
  assert shot.shape == bare.shape == (4000, 1280)
  # The figures are dark images (digits on black) and plots: the rendered page has
  # far more dark pixels with them than the text and tables alone.
  dark, dark_bare = (shot < 100).mean(), (bare < 100).mean()
  assert dark > 3 * dark_bare and dark > 0.02, (dark, dark_bare)


@pytest.mark.parametrize(
  "override,match",
  [
    (
      "gallery.methods=('lime',)",
      "gallery.methods: unknown method 'lime'; known: gradient, gradient_x_input",
    ),
    (
      "parts=('gallery', 'lime')",
      "unknown parts 'lime'; known: gallery, grid_pointing, localization, reconstruction, sanity",
    ),
    ("parts=('gallery', 'gallery')", "parts must name each part at most once"),
    ("gallery.num_images=0", "gallery.num_images must be a positive integer; got 0"),
    ("sanity.modes=('independent',)", "sanity.modes must include 'cascading'"),
    ("localization.methods=('lrp',)", "unknown method 'lrp'"),
    ("reconstruction.methods=('lime',)", "unknown method 'lime'"),
    (
      "reconstruction.masker_variant='fix'",
      "reconstruction.masker_variant 'fix' is not among localization.maskers",
    ),
  ],
)
def test_a_bad_demo_config_is_refused_before_anything_is_written(override, match, tmp_path, capsys):
  work = tmp_path / "demo"
  assert (
    cli.main(["demo", "--config", "demo_digits:test", "--workdir", str(work), "--set", override])
    == 2
  )
  err = capsys.readouterr().err
  assert err.startswith("jaxsal: error:") and match in err
  assert not work.exists()


def test_the_demo_runs_only_the_parts_its_config_lists(data_dir, demo_run, tmp_path):
  """``parts=('grid_pointing',)``: that part's numbers, its section of the report, nothing else."""
  work = tmp_path / "demo"
  shutil.copytree(demo_run["work"], work)
  for name in ("metrics.json", "report.html", "localization.json", "grid_pointing.json"):
    (work / name).unlink()
  argv = ["demo", "--config", "demo_digits:test", "--workdir", str(work), "--no-progress"]
  overrides = demo_run["overrides"] + ["parts=('grid_pointing',)"]
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    assert cli.main(argv + [a for o in overrides for a in ("--set", o)]) == 0
  m = json.loads((work / "metrics.json").read_text())
  assert set(m) == {"classifier", "grid_pointing", "seconds", "environment", "config"}
  assert m["grid_pointing"]["grids"] == demo_run_metrics(demo_run)["grid_pointing"]["grids"]
  assert not (work / "localization.json").exists()
  html = (work / "report.html").read_text()
  assert "Grid pointing game" in html and "<h2>Localisation</h2>" not in html
  assert len(re.findall(r'<img src="data:image/png;base64,', html)) == 1


def demo_run_metrics(demo_run):
  return json.loads((demo_run["work"] / "metrics.json").read_text())
