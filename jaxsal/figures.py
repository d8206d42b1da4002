"""Figures of saliency maps: overlays, a method-by-image grid, reconstructions, sanity-check cascades and curves, metric tables.

matplotlib, headless by default.

Every function takes numpy arrays: images ``[H, W, C]`` with values in
[0, 1], maps ``[H, W]`` or ``[H, W, C]`` (channels are reduced with the sum
of absolute values). They work in a notebook too: pass ``path=None`` and
display the returned figure.

Example:
  >>> import numpy as np
  >>> from jaxsal import figures
  >>> fig = figures.overlay_panel(np.zeros((8, 8, 3)), np.eye(8), title="gradient")
  >>> len(fig.axes)
  4
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import numpy as np


def _pyplot():
  import matplotlib

  if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
    # A backend that cannot be switched (already in use) is left as it is.
    with contextlib.suppress(Exception):
      matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt


def _finish(fig, path: str | None):
  """Lays ``fig`` out; saves it to ``path`` (PNG) and closes it when a path is given."""
  fig.tight_layout()
  if path:
    import jax

    if jax.process_index() == 0:  # the files of a multi-process job are written once
      fig.savefig(path, dpi=100)
    _pyplot().close(fig)
  return fig


def saliency_2d(saliency: np.ndarray) -> np.ndarray:
  """``[H, W]`` in [0, 1]: the channels' absolute sum, divided by its 99.5th percentile.

  Example:
    >>> saliency_2d(np.array([[1.0, -3.0], [0.0, 2.0]]))[0]
    array([0.33500838, 1.        ])
  """
  s = np.asarray(saliency, np.float64)
  if s.ndim == 3:
    s = np.abs(s).sum(-1)
  elif s.ndim == 2:
    s = np.abs(s)
  else:
    raise ValueError(f"saliency must be [H, W] or [H, W, C]; got shape {s.shape}")
  top = np.percentile(s, 99.5)
  return np.clip(s / top, 0, 1) if top > 0 else np.zeros_like(s)


def _rgb(image: np.ndarray) -> np.ndarray:
  image = np.asarray(image, np.float64)
  if image.ndim == 2:
    image = image[..., None]
  if image.shape[-1] == 1:
    image = np.repeat(image, 3, -1)
  return np.clip(image, 0, 1)


def heatmap(saliency: np.ndarray, cmap: str = "inferno") -> np.ndarray:
  """``[H, W, 3]`` RGB in [0, 1] of :func:`saliency_2d` through a colour map."""
  plt = _pyplot()
  return plt.get_cmap(cmap)(saliency_2d(saliency))[..., :3]


def blend(image: np.ndarray, saliency: np.ndarray, alpha: float = 0.5) -> np.ndarray:
  """The image in grey, with the heat map laid over it with opacity ``alpha * saliency``."""
  grey = _rgb(image).mean(-1, keepdims=True).repeat(3, -1)
  s = saliency_2d(saliency)[..., None]
  return grey * (1 - alpha * s) + heatmap(saliency) * alpha * s


def masked(image: np.ndarray, saliency: np.ndarray, keep: float = 0.2) -> np.ndarray:
  """The image where the map is in its top ``keep`` fraction, black elsewhere."""
  s = saliency_2d(saliency)
  return _rgb(image) * (s >= np.quantile(s, 1 - keep))[..., None]


def overlay_panel(
  image: np.ndarray,
  saliency: np.ndarray,
  *,
  title: str = "",
  keep: float = 0.2,
  path: str | None = None,
):
  """Four panels: the image, the heat map, the blend, the masked image. Saved if ``path``."""
  plt = _pyplot()
  fig, axes = plt.subplots(1, 4, figsize=(10, 2.8))
  panels = [
    (_rgb(image), "image"),
    (heatmap(saliency), title or "map"),
    (blend(image, saliency), "blended"),
    (masked(image, saliency, keep), f"top {keep:.0%} kept"),
  ]
  for ax, (img, name) in zip(axes, panels):
    ax.imshow(img, interpolation="nearest")
    ax.set_title(name, fontsize=9)
    ax.axis("off")
  return _finish(fig, path)


def method_grid(
  images: Sequence[np.ndarray],
  maps: dict[str, Sequence[np.ndarray]],
  *,
  row_titles: Sequence[str] | None = None,
  boxes: np.ndarray | None = None,
  cell_size: float = 2.1,
  style: str = "blend",
  path: str | None = None,
):
  """A grid: one row per image, the image then one map per method.

  Args:
    images: ``N`` images ``[H, W, C]`` in [0, 1].
    maps: method name -> ``N`` maps.
    row_titles: a label per image (e.g. its file name and the explained class).
    boxes: optional int ``[N, 4]`` ``(y0, x0, y1, x1)`` end-exclusive boxes,
      drawn in green on the image column (e.g. the true object boxes).
    cell_size: inches per panel.
    style: ``'blend'`` (the heat map over the image in grey, see :func:`blend`)
      or ``'heat'`` (the heat map alone, see :func:`heatmap`: clearer on
      small or dark images).
    path: where to save the figure (PNG), if given.
  """
  plt = _pyplot()
  if style not in ("blend", "heat"):
    raise ValueError(f"style must be 'blend' or 'heat'; got {style!r}")
  n, names = len(images), list(maps)
  for name in names:
    if len(maps[name]) != n:
      raise ValueError(f"maps[{name!r}] has {len(maps[name])} maps for {n} images")
  if boxes is not None and np.shape(boxes) != (n, 4):
    raise ValueError(f"boxes must be [N, 4] = [{n}, 4]; got shape {np.shape(boxes)}")
  fig, axes = plt.subplots(
    n, len(names) + 1, figsize=(cell_size * (len(names) + 1), cell_size * n), squeeze=False
  )
  for i, image in enumerate(images):
    axes[i, 0].imshow(_rgb(image), interpolation="nearest")
    axes[i, 0].set_title(row_titles[i] if row_titles else "image", fontsize=8)
    if boxes is not None:
      y0, x0, y1, x1 = (float(v) for v in boxes[i])
      axes[i, 0].add_patch(
        plt.Rectangle(
          (x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor="lime", linewidth=1.2
        )
      )
    for j, name in enumerate(names):
      shown = blend(image, maps[name][i]) if style == "blend" else heatmap(maps[name][i])
      axes[i, j + 1].imshow(shown, interpolation="nearest")
      if i == 0:
        axes[i, j + 1].set_title(name, fontsize=8)
  for ax in axes.ravel():
    ax.axis("off")
  return _finish(fig, path)


def reconstruction_grid(
  images: Sequence[np.ndarray],
  keep: Sequence[np.ndarray],
  samples: np.ndarray,
  *,
  predicted: np.ndarray | None = None,
  clean: Sequence[int] | None = None,
  title: str = "",
  cell_size: float = 1.6,
  path: str | None = None,
):
  """One row per image: the image, the pixels kept, then each reconstruction.

  Args:
    images: ``N`` images ``[H, W, C]`` in [0, 1].
    keep: ``N`` masks ``[H, W]`` in [0, 1] (what was kept; shown over black).
    samples: ``[S, N, H, W, C]`` reconstructions (``jaxsal.attribution.reconstruct``).
    predicted: optional ``[S, N]`` classes of the samples, written over each;
      in green where it equals ``clean[n]`` (the class of the clean image), else red.
    clean: optional ``N`` classes of the clean images.
    title: the figure's title.
    cell_size: inches per panel.
    path: where to save the figure (PNG), if given.
  """
  plt = _pyplot()
  samples = np.asarray(samples)
  n = len(images)
  if samples.ndim != 5 or samples.shape[1] != n:
    raise ValueError(f"samples must be [S, N, H, W, C] with N = {n}; got shape {samples.shape}")
  if len(keep) != n:
    raise ValueError(f"keep has {len(keep)} masks for {n} images")
  s = samples.shape[0]
  if predicted is not None and np.shape(predicted) != (s, n):
    raise ValueError(f"predicted must be [S, N] = [{s}, {n}]; got shape {np.shape(predicted)}")
  fig, axes = plt.subplots(
    n, s + 2, figsize=(cell_size * (s + 2), (cell_size + 0.25) * n + 0.4), squeeze=False
  )
  for i in range(n):
    k = np.asarray(keep[i], np.float64)
    k = k[..., 0] if k.ndim == 3 else k
    axes[i, 0].imshow(_rgb(images[i]), interpolation="nearest")
    axes[i, 0].set_title(
      "image" if clean is None else f"image: predicted {int(clean[i])}", fontsize=8
    )
    axes[i, 1].imshow(_rgb(images[i]) * k[..., None], interpolation="nearest")
    axes[i, 1].set_title(f"kept ({k.mean():.0%})", fontsize=8)
    for j in range(s):
      axes[i, j + 2].imshow(_rgb(samples[j, i]), interpolation="nearest")
      if predicted is not None:
        p = int(predicted[j, i])
        same = clean is not None and p == int(clean[i])
        axes[i, j + 2].set_title(
          f"sample {j + 1}: {p}",
          fontsize=8,
          color="green" if same else ("red" if clean is not None else "black"),
        )
      else:
        axes[i, j + 2].set_title(f"sample {j + 1}", fontsize=8)
  for ax in axes.ravel():
    ax.axis("off")
  if title:
    fig.suptitle(title, fontsize=9)
  return _finish(fig, path)


def metric_table(
  rows: dict[str, dict[str, float]],
  *,
  columns: Sequence[str] | None = None,
  title: str = "",
  digits: int = 3,
  path: str | None = None,
):
  """A table of numbers as a figure: one row per entry of ``rows`` (name -> {column: value}).

  Example:
    >>> fig = metric_table({"masker": {"le": 0.02, "pxap": 0.83}, "gradient": {"le": 0.3}})
    >>> fig.axes[0].tables[0][2, 1].get_text().get_text()     # gradient's pxap
    '-'
  """
  plt = _pyplot()
  names = list(rows)
  if not names:
    raise ValueError("rows: give at least one row")
  columns = (
    list(columns)
    if columns is not None
    else list(dict.fromkeys(k for r in rows.values() for k in r))
  )
  cells = [
    [("-" if rows[n].get(c) is None else f"{rows[n][c]:.{digits}f}") for c in columns]
    for n in names
  ]
  fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(columns), 0.5 + 0.3 * len(names)))
  ax.axis("off")
  table = ax.table(cellText=cells, rowLabels=names, colLabels=columns, loc="center")
  table.auto_set_font_size(False)
  table.set_fontsize(8)
  if title:
    ax.set_title(title, fontsize=9)
  return _finish(fig, path)


def sanity_cascade(
  res: dict[str, Any], path: str | None = None, *, mode: str = "cascading", image: int = 0
):
  """The cascade figure of ``sanity_checks.model_randomization``'s results: methods in rows, the trained model then each stage in columns.

  Saved to ``path`` (PNG) and closed if given; the figure is returned (for a notebook).
  """
  plt = _pyplot()
  methods = list(res["examples"][mode])
  cols = ["trained"] + res["stages"][mode]
  fig, axes = plt.subplots(
    len(methods), len(cols) + 1, figsize=(1.3 * (len(cols) + 1), 1.3 * len(methods)), squeeze=False
  )
  img = res["images"][image][..., 0] if res["images"].shape[-1] == 1 else res["images"][image]
  for r, name in enumerate(methods):
    axes[r, 0].imshow(img, cmap="gray")
    axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=7)
    for c in range(len(cols)):
      axes[r, c + 1].imshow(res["examples"][mode][name][c, image], cmap="gray", vmin=0, vmax=1)
  for c, title in enumerate(["input"] + cols):
    axes[0, c].set_title(title, fontsize=7, rotation=45 if c > 1 else 0)
  for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
  fig.suptitle(f"{mode} randomisation (from the logits down, left to right)", fontsize=9)
  return _finish(fig, path)


def sanity_curves(res: dict[str, Any], path: str | None = None, *, mode: str = "cascading"):
  """The similarity curves of ``model_randomization``'s results: one panel per measure, one line per method, mean ± std.

  Saved to ``path`` (PNG) and closed if given; the figure is returned (for a notebook).
  """
  from jaxsal.sanity import MEASURES

  plt = _pyplot()
  stages = res["stages"][mode]
  fig, axes = plt.subplots(1, len(MEASURES), figsize=(4 * len(MEASURES), 3.4), squeeze=False)
  x = np.arange(len(stages) + 1)
  for ax, metric in zip(axes[0], MEASURES):
    for name, r in res["results"][mode].items():
      mean = np.array([1.0] + r[metric]["mean"])
      std = np.array([0.0] + r[metric]["std"])
      ax.plot(x, mean, marker="o", ms=3, label=name)
      ax.fill_between(x, mean - std, mean + std, alpha=0.15)
    ax.set_xticks(x, ["trained"] + stages, rotation=60, fontsize=7)
    ax.set_title(metric)
    ax.set_ylim(-0.5, 1.05)
    ax.axhline(0, color="gray", lw=0.5)
  axes[0, -1].legend(fontsize=7)
  fig.suptitle(f"{mode} randomisation: similarity to the trained model's maps", fontsize=9)
  return _finish(fig, path)


def grid_example(ex: dict[str, Any], path: str | None = None):
  """A grid explained for each cell's class, one row per variant (alone, CGI, VAR).

  Args:
    ex: ``jaxsal.experiments.grid_pointing.example``'s result: ``image``
      ``[H, W, C]`` in ``[0, 1]``, ``classes``, ``method`` and ``maps``
      ``{variant: [cells, H, W]}``.
    path: where to save the PNG (the figure is closed); without it the
      figure is returned (for a notebook).

  Only a map's positive part is drawn: the pointing game counts positive mass.
  """
  plt = _pyplot()
  variants = list(ex["maps"])
  cols = len(ex["classes"]) + 1
  fig, axes = plt.subplots(
    len(variants), cols, figsize=(1.7 * cols, 1.8 * len(variants)), squeeze=False
  )
  for r, v in enumerate(variants):
    axes[r, 0].imshow(_rgb(ex["image"]), interpolation="nearest")
    axes[r, 0].set_ylabel(v, rotation=0, ha="right", va="center", fontsize=9)
    for k, c in enumerate(ex["classes"]):
      pos = np.maximum(ex["maps"][v][k], 0)
      axes[r, k + 1].imshow(blend(ex["image"], pos), interpolation="nearest")
      if r == 0:
        axes[r, k + 1].set_title(f"class {c}", fontsize=9)
  for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
  fig.suptitle(
    f"{ex['method']} on a grid, for each cell's class: the right cell should light up", fontsize=9
  )
  return _finish(fig, path)
