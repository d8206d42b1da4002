"""The demo's report: one self-contained HTML file, tables from its metrics, figures embedded.

``jaxsal demo`` computes; this module only renders what it wrote to
``metrics.json`` and its figures, so a report can be rebuilt from a finished
workdir without running anything again.

Example:
  >>> import json, os
  >>> from jaxsal import report
  >>> workdir = "runs/demo"
  >>> if os.path.exists(os.path.join(workdir, "metrics.json")):  # after `jaxsal demo`
  ...   report.write(workdir)
"""

from __future__ import annotations

import base64
import html
import json
import os
from typing import Any

from jaxsal import sanity
from jaxsal.experiments import grid_pointing, localization

REPORT_FILE = "report.html"
METRICS_FILE = "metrics.json"
FIGURES_DIR = "figures"
# The figures the report embeds, relative to the demo's workdir (the sanity
# check's are the ones ``jaxsal sanity`` writes).
FIGURES = {
  "gallery": f"{FIGURES_DIR}/gallery.png",
  "grid_example": f"{FIGURES_DIR}/grid_example.png",
  "sanity_cascade": "sanity/cascading_cascade.png",
  "sanity_curves": "sanity/cascading_curves.png",
  "reconstruction": f"{FIGURES_DIR}/reconstruction.png",
}
_LOWER_IS_BETTER = {"le", "om", "sm"}
_COLUMN_NAMES = {"le": "LE", "om": "OM", "f1": "F1", "f1a": "F1a", "sm": "SM", "pxap": "PxAP"}

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1200px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.8em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}
thead th{background:#f3f3f3} table.text td,table.text th{text-align:left}
img{max-width:100%;height:auto;border:1px solid #eee;margin:.4em 0}
.note{color:#555;font-size:.92em} code{background:#f5f5f5;padding:0 .2em}
"""

_e = html.escape


def method_note(name: str) -> str:
  """What a gallery column shows: the registry's description, or the masker's."""
  from jaxsal import attribution as A

  if name == "masker":
    return "the CA masker's mask, one forward pass (Phang, Park & Geras 2020)"
  return A.method_description(name)


def headline(metrics: dict[str, Any]) -> list[str]:
  """The demo's headline numbers, one phrase each, for the parts that ran."""
  m = metrics
  says = [f"classifier test accuracy {m['classifier']['test_accuracy']:.4f}"]
  for name, r in m.get("localization", {}).get("rows", {}).items():
    if name.startswith("masker"):
      says.append(f"{name} LE {r['le']:.3f} PxAP {r['pxap']:.3f}")
  rho = m.get("sanity", {}).get("fully_randomized", {}).get("gradient", {}).get("spearman_abs")
  if rho is not None:
    says.append(f"gradient's rank correlation after full randomisation {rho:.2f}")
  rows = m.get("reconstruction", {}).get("rows", {})
  if "optimized_mask" in rows and "random_pixels" in rows:
    area = str(m["reconstruction"]["areas"][0])
    kept = lambda name: rows[name][area]["kept_mean"]
    says.append(
      f"reconstructions from the optimised mask's top {float(area):.0%} keep the decision "
      f"{kept('optimized_mask'):.0%} of the time (random pixels {kept('random_pixels'):.0%})"
    )
  if "gallery" in m:
    says.append(f"{len(m['gallery']['methods'])} methods on {m['gallery']['num_images']} images")
  return says


def _img(path: str, alt: str) -> str:
  with open(path, "rb") as f:
    data = base64.b64encode(f.read()).decode("ascii")
  return f'<img src="data:image/png;base64,{data}" alt="{_e(alt)}">'


def _table(head: list[str], rows: list[list[str]], *, klass: str = "") -> str:
  th = "".join(f"<th>{_e(h)}</th>" for h in head)
  body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
  return f'<table class="{klass}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def _header(m: dict[str, Any]) -> list[str]:
  c, sec, env = m["classifier"], m["seconds"], m["environment"]
  return [
    "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
    f"<title>jaxsal demo report</title><style>{_CSS}</style></head><body>",
    "<h1>jaxsal demo</h1>",
    f"<p class='note'>{_e(env['date'])}; jaxsal {_e(env['jaxsal'])}, jax {_e(env['jax'])} on "
    f"{env['num_devices']} {_e(env['platform'])} device(s) ({_e(env['device_kind'])}), "
    f"{env['cpu_count']} CPU cores; {sec['total']:.0f} s in all. The sizes are the demo's "
    "(a few hundred to a thousand test images), so the numbers are noisier than the full "
    "experiments in jaxsal's documentation.</p>",
    f"<p><b>In short:</b> {_e('; '.join(headline(m)))}.</p>",
    "<h2>The classifier</h2>",
    f"<p><code>{_e(c['model'])}</code> trained on <code>{_e(c['dataset'])}</code> "
    f"(digits on cluttered canvases, with true boxes and masks) for {c['steps']} steps: "
    f"test accuracy <b>{c['test_accuracy']:.4f}</b> ({sec['classifier']:.0f} s).</p>",
  ]


def _gallery(m: dict[str, Any], figs: dict[str, str]) -> list[str]:
  gal, sec = m["gallery"], m["seconds"]
  rows = [
    [f"<code>{_e(name)}</code>", _e(method_note(name)), f"{gal['seconds'][name]:.1f}"]
    for name in gal["methods"]
  ]
  return [
    "<h2>Every method on held-out images</h2>",
    f"<p>{gal['num_images']} test images (the true box drawn in green), each explained for "
    f"its predicted class by {len(gal['methods'])} methods; each map is its absolute value "
    "summed over channels, scaled to its 99.5th percentile and coloured from black (0) to "
    f"yellow (1) ({sec['gallery']:.0f} s).</p>",
    _img(figs["gallery"], "every method on held-out images"),
    _table(["method", "what the map is", "seconds"], rows, klass="text"),
  ]


def _localization(m: dict[str, Any], figs: dict[str, str]) -> list[str]:
  loc, sec = m["localization"], m["seconds"]
  rows = loc["rows"]
  scored = [col for col in localization.COLUMNS if col not in ("area", "accuracy")]
  best = {
    col: (min if col in _LOWER_IS_BETTER else max)(r[col] for r in rows.values()) for col in scored
  }
  table = []
  for name, r in rows.items():
    cells = [_e(name)]
    for col in localization.COLUMNS:
      s = f"{r[col]:.3f}"
      cells.append(f"<b>{s}</b>" if col in best and r[col] == best[col] else s)
    table.append(cells)
  head = ["map"] + [_COLUMN_NAMES.get(col, col) for col in localization.COLUMNS]
  return [
    "<h2>Localisation</h2>",
    f"<p>Weakly supervised localisation on {loc['num_images']} test images "
    f"({sec['localization']:.0f} s, the masker's training included). "
    "<b>LE</b>: localisation error, the share of images where the box around the largest "
    "connected region of the map above its mean overlaps the true box with IoU &le; 0.5 "
    "(lower is better); <b>OM</b>: LE that also counts a wrong top-1 as an error (lower); "
    "<b>F1</b>, <b>F1a</b>: F1 of the continuous map against the true box (best and mean "
    "over an image's boxes; one box here, so they are equal; higher); <b>SM</b>: Dabkowski "
    "&amp; Gal's saliency metric, log of the box's area fraction minus the log probability "
    "of the class on the box's crop (lower); <b>PxAP</b>: pixel average precision against "
    "the true mask (higher); area: the mean map value; accuracy: of the classifier that "
    "the map explains. Best in bold.</p>",
    _table(head, table),
  ]


def _grid_pointing(m: dict[str, Any], figs: dict[str, str]) -> list[str]:
  gp, sec = m["grid_pointing"], m["seconds"]
  sizes = list(gp["grids"])
  methods = list(dict.fromkeys(k.split("/")[0] for r in gp["grids"].values() for k in r))
  rows = []
  for name in methods:
    for size in sizes:
      cells = [_e(name) if len(sizes) == 1 else _e(f"{name} ({size})")]
      for v in grid_pointing.VARIANTS:
        r = gp["grids"][size].get(f"{name}/{v}")
        if r is None:
          cells.append("-")
          continue
        empty = r.get("empty_share")
        note = f" <span class='note'>({empty:.0%} empty)</span>" if empty else ""
        cells.append(f"{r['mean']:.3f} ± {r['sem']:.3f}{note}")
      rows.append(cells)
  chance = ", ".join(f"{1 / int(s.split('x')[0]) ** 2:.2f} for {s}" for s in sizes)
  return [
    "<h2>Grid pointing game</h2>",
    f"<p>{gp['num_grids']} grids per size of test digits of distinct classes (each "
    f"classified correctly with high confidence on its own; {gp['images_used']} such "
    "images). A map's score is the share of its positive mass inside the cell of the "
    f"explained class (chance: {chance}); mean ± standard error, higher is better. A map "
    "with no positive mass scores 0 (the share of such maps in brackets) "
    f"({sec['grid_pointing']:.0f} s).</p>",
    _table(["method", *grid_pointing.VARIANTS], rows),
    _img(figs["grid_example"], "a grid explained for each cell's class"),
  ]


def _sanity(m: dict[str, Any], figs: dict[str, str]) -> list[str]:
  san, sec = m["sanity"], m["seconds"]
  rows = [
    [f"<code>{_e(name)}</code>"] + [f"{r[k]:.2f}" for k in sanity.MEASURES]
    for name, r in san["fully_randomized"].items()
  ]
  return [
    "<h2>Sanity check: cascading model randomisation</h2>",
    "<p>The layers are re-initialised one by one from the logits down "
    f"({', '.join(_e(s) for s in san['stages'])}); at each stage every method's maps are "
    "compared with the trained model's (Spearman rank correlation of the absolute and of "
    "the signed map, SSIM, HOG similarity). A method that explains the model should lose "
    f"its similarity as the model is destroyed ({sec['sanity']:.0f} s).</p>",
    _img(figs["sanity_cascade"], "cascading randomisation of the maps"),
    _img(figs["sanity_curves"], "similarity curves"),
    "<p>Similarity to the trained model's maps once every layer is random (lower means the "
    "method depends on the model):</p>",
    _table(["method", *sanity.MEASURES], rows),
  ]


def _reconstruction(m: dict[str, Any], figs: dict[str, str]) -> list[str]:
  rec, sec = m["reconstruction"], m["seconds"]
  areas = [str(a) for a in rec["areas"]]
  pct = lambda stats, k: f"{100 * stats[k + '_mean']:.1f}"
  floor = " <span class='note'>(floor)</span>"
  rows = [
    [f"<code>{_e(name)}</code>" + (floor if name in ("random_pixels", "random_blobs") else "")]
    + [pct(r[a], "kept") for a in areas]
    + [pct(r[a], "accuracy") for a in areas]
    for name, r in rec["rows"].items()
  ]
  nk = rec["none_kept"]
  rows.append(
    [f"nothing kept{floor}"] + [pct(nk, "kept")] * len(areas) + [pct(nk, "accuracy")] * len(areas)
  )
  g, ex = rec["generator"], rec.get("example")
  head = (
    ["map"] + [f"kept @{float(a):.0%}" for a in areas] + [f"acc @{float(a):.0%}" for a in areas]
  )
  return [
    "<h2>Reconstructions from the salient pixels</h2>",
    "<p>Our reading of Thakur &amp; Fischmeister 2020: each map's top "
    f"{', '.join(f'{float(a):.0%}' for a in areas)} of pixels is kept, the rest is sampled "
    f"{rec['num_samples']} times from an inpainting VAE ({g['steps']} steps; test -ELBO "
    f"{g['test_elbo']:.1f} nats per image, KL {g['kl']:.1f}), and the classifier classifies "
    "each sample. <b>kept</b>: the share (%) of samples whose class is the classifier's on "
    "the clean image; <b>acc</b>: the share that is the true label; "
    f"{rec['num_images']} test images, clean accuracy {rec['clean_accuracy']:.3f}. Random "
    "pixels and random blobs of the same area are the floors a map must beat "
    f"({sec['reconstruction']:.0f} s, the generator's training included).</p>",
    _table(head, rows),
  ] + (
    []
    if ex is None  # the figure shows the gallery's maps: none without the gallery
    else [
      _img(figs["reconstruction"], "reconstructions from the kept pixels"),
      f"<p class='note'>The figure keeps the top {ex['area']:.0%} of "
      f"<code>{_e(ex['method'])}</code>'s gallery map; a sample's class is green where it is "
      "the clean image's.</p>",
    ]
  )


# The parts' sections, in the report's order; a part the demo did not run has none.
_SECTIONS = {
  "gallery": _gallery,
  "localization": _localization,
  "grid_pointing": _grid_pointing,
  "sanity": _sanity,
  "reconstruction": _reconstruction,
}

_FOOTER = [
  "<h2>Reproduce</h2>",
  "<p>Every number above is in <code>metrics.json</code> beside this file; the parts also "
  "wrote <code>localization.json</code>, <code>grid_pointing.json</code>, "
  "<code>sanity/</code> and <code>reconstruction.json</code> into the workdir. The full "
  "experiments: <code>jaxsal localization --config localization_digits</code>, "
  "<code>jaxsal grid-pointing --config grid_pointing_digits</code>, <code>jaxsal sanity "
  "--config sanity_digits</code>, <code>jaxsal train-generator</code> then <code>jaxsal "
  "reconstruction</code>.</p>",
  "</body></html>",
]


def render(metrics: dict[str, Any], figures: dict[str, str]) -> str:
  """The report's HTML.

  Args:
    metrics: what the demo writes to ``metrics.json``.
    figures: ``{name: PNG path}`` for the figures of the parts in ``metrics``
      (:data:`FIGURES`).

  Raises:
    FileNotFoundError: a figure is missing.
  """
  parts = _header(metrics)
  for name, section in _SECTIONS.items():
    if name in metrics:
      parts += section(metrics, figures)
  return "\n".join(parts + _FOOTER)


def figure_paths(workdir: str) -> dict[str, str]:
  """``{name: path}`` of the report's figures in a demo workdir."""
  return {name: os.path.join(workdir, *f.split("/")) for name, f in FIGURES.items()}


def write(workdir: str, metrics: dict[str, Any] | None = None) -> str:
  """Renders ``report.html`` into ``workdir`` (written whole or not at all); returns its path.

  Args:
    workdir: a demo workdir, with its figures.
    metrics: the demo's metrics; read from ``workdir/metrics.json`` when None.
  """
  if metrics is None:
    with open(os.path.join(workdir, METRICS_FILE)) as f:
      metrics = json.load(f)
  import jax

  path = os.path.join(workdir, REPORT_FILE)
  if jax.process_index() != 0:  # the files of a multi-process job are written once
    return path
  text = render(metrics, figure_paths(workdir))
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)
  return path
