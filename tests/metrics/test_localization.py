"""Localisation metrics on hand-made masks, boxes and classifiers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import average_precision_score

from jaxsal import metrics


def test_mask_to_box_of_hand_drawn_masks_has_no_off_by_one():
  m = np.zeros((8, 10), np.float32)
  m[2:5, 3:7] = 1.0  # rows 2..4, cols 3..6
  np.testing.assert_array_equal(metrics.mask_to_box(jnp.asarray(m)), [2, 3, 5, 7])
  m[7, 9] = 1.0  # a single corner pixel: a smaller component
  np.testing.assert_array_equal(metrics.mask_to_box(jnp.asarray(m)), [2, 3, 5, 7])
  m[:, :] = 0.0
  m[0:8, 9] = 0.5  # the last column, whole height
  np.testing.assert_array_equal(metrics.mask_to_box(jnp.asarray(m)), [0, 9, 8, 10])
  # A constant mask has nothing above its mean: the whole image, as the official code.
  np.testing.assert_array_equal(metrics.mask_to_box(jnp.full((8, 10), 0.3)), [0, 0, 8, 10])
  # Diagonal neighbours are not 4-connected: the two 2-pixel pieces tie, the first wins.
  d = np.zeros((6, 6), np.float32)
  d[0, 0] = d[0, 1] = d[1, 2] = d[1, 3] = 1.0
  np.testing.assert_array_equal(metrics.mask_to_box(jnp.asarray(d)), [0, 0, 1, 2])


def test_largest_component_equals_scipy_on_random_masks():
  rng = np.random.default_rng(0)
  masks = rng.random((12, 20, 24)) > 0.55
  got = jax.jit(jax.vmap(metrics.largest_component))(jnp.asarray(masks))
  for m, g in zip(masks, np.asarray(got)):
    lab, _ = ndimage.label(m)
    counts = np.bincount(lab.ravel(), weights=m.ravel())
    np.testing.assert_array_equal(g, lab == np.argmax(counts))


def test_le_om_and_iou_on_constructed_boxes():
  pred = jnp.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]])
  gt = jnp.array(
    [
      [[0, 0, 10, 10], [50, 50, 60, 60]],  # exact match
      [[0, 0, 10, 20], [0, 0, 0, 0]],  # IoU 0.5: not > 0.5
      [[0, 0, 10, 19], [0, 0, 10, 10]],
    ]
  )  # IoU 10/19 > 0.5; second invalid
  valid = jnp.array([[True, True], [True, False], [True, False]])
  np.testing.assert_allclose(metrics.box_iou(pred[1], gt[1, 0]), 0.5)
  np.testing.assert_array_equal(metrics.localization_error(pred, gt, valid), [0.0, 1.0, 0.0])
  np.testing.assert_array_equal(
    metrics.official_metric(pred, gt, jnp.array([0, 1, 1]), valid), [1.0, 1.0, 0.0]
  )


def test_f1_of_continuous_masks():
  m = np.zeros((1, 10, 10), np.float32)
  m[0, 0:5, 0:5] = 1.0  # 25 px of mask
  gt = jnp.array([[[0, 0, 5, 10], [0, 0, 5, 5]]])  # 50 px half-image; exact box
  f1, f1a = metrics.mask_f1(jnp.asarray(m), gt)
  # box 1: precision 1, recall 25/50 -> F1 2/3; box 2: F1 1.
  np.testing.assert_allclose(f1, [1.0], rtol=1e-6)
  np.testing.assert_allclose(f1a, [(2 / 3 + 1.0) / 2], rtol=1e-6)
  m[0, 0:5, 0:5] = 0.5  # precision uses the continuous mass
  f1, _ = metrics.mask_f1(jnp.asarray(m), gt[:, 1:])
  np.testing.assert_allclose(f1, [2 * 1.0 * 0.5 / 1.5], rtol=1e-6)


def test_pxap_equals_sklearn_average_precision_on_a_threshold_grid():
  rng = np.random.default_rng(1)
  scores = (rng.integers(0, 100, size=(4, 16, 16)) / 100).astype(np.float32)
  truth = rng.random((4, 16, 16)) < 0.2 + 0.6 * scores
  want = average_precision_score(truth.ravel(), scores.ravel())
  np.testing.assert_allclose(metrics.pxap(jnp.asarray(scores), jnp.asarray(truth)), want, rtol=1e-5)


def test_saliency_metric_on_a_classifier_of_mean_brightness():
  def apply_fn(p, x):  # logits (mean, 0): p_0 = sigmoid(mean brightness)
    return jnp.stack([x.mean((1, 2, 3)) * p, jnp.zeros(x.shape[0])], 1)

  x = np.zeros((3, 20, 20, 1), np.float32)
  x[:, 5:15, 5:15] = 1.0
  boxes = jnp.array([[0, 0, 20, 20], [5, 5, 15, 15], [5, 5, 7, 7]])
  sm = metrics.saliency_metric(apply_fn, 4.0, jnp.asarray(x), boxes, jnp.zeros(3, jnp.int32))
  logsig = lambda v: -np.log1p(np.exp(-v))
  # Whole image: area 1, mean 0.25. The bright square: area 0.25, crop all ones.
  # The 2x2 corner (area 0.01 -> 0.05): the crop is all ones too.
  want = [0.0 - logsig(4 * 0.25), np.log(0.25) - logsig(4.0), np.log(0.05) - logsig(4.0)]
  np.testing.assert_allclose(sm, want, rtol=1e-4)


def test_bad_input_is_named():
  with pytest.raises(ValueError, match=r"one mask \[H, W\]"):
    metrics.mask_to_box(jnp.zeros((2, 4, 4)))
  with pytest.raises(ValueError, match=r"gt_boxes must be \[B, G, 4\] with B = 2"):
    metrics.localization_error(jnp.zeros((2, 4)), jnp.zeros((3, 1, 4)))


def test_saliency_metric_crops_and_resizes_as_torch_interpolate():
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(2)
  x = rng.random((2, 12, 16, 3)).astype(np.float32)
  w = rng.standard_normal((12 * 16 * 3, 4)).astype(np.float32)
  boxes = np.array([[2, 3, 9, 8], [0, 5, 12, 16]])
  target = np.array([1, 3])
  got = metrics.saliency_metric(
    lambda p, v: v.reshape(v.shape[0], -1) @ p,
    jnp.asarray(w),
    jnp.asarray(x),
    jnp.asarray(boxes),
    jnp.asarray(target),
  )
  for b, (y0, x0, y1, x1) in enumerate(boxes):
    crop = torch.from_numpy(x[b : b + 1, y0:y1, x0:x1]).permute(0, 3, 1, 2)
    up = (
      torch.nn.functional.interpolate(crop, size=(12, 16), mode="bilinear", align_corners=False)
      .permute(0, 2, 3, 1)
      .numpy()
    )
    logits = up.reshape(1, -1) @ w
    logp = logits[0] - np.log(np.exp(logits[0] - logits[0].max()).sum()) - logits[0].max()
    area = (y1 - y0) * (x1 - x0) / (12 * 16)
    np.testing.assert_allclose(
      got[b], np.log(max(area, 0.05)) - logp[target[b]], rtol=1e-4, atol=1e-4
    )


def test_localization_scores_of_constructed_maps():
  # Image 0: the map is exactly the box; image 1: a map in the wrong corner.
  h = w = 12
  gt = np.array([[[2, 2, 8, 8]], [[2, 2, 8, 8]]], np.int32)
  maps = np.zeros((2, h, w), np.float32)
  maps[0, 2:8, 2:8] = 1.0
  maps[1, 9:12, 9:12] = 0.5
  gt_masks = metrics.box_masks(jnp.asarray(gt[:, 0]), h, w)
  s = metrics.localization_scores(
    jnp.asarray(maps), jnp.asarray(gt), gt_masks, jnp.array([1.0, 1.0])
  )
  np.testing.assert_array_equal(s["boxes"], [[2, 2, 8, 8], [9, 9, 12, 12]])
  np.testing.assert_array_equal(s["le"], [0.0, 1.0])
  np.testing.assert_array_equal(s["om"], [0.0, 1.0])
  np.testing.assert_allclose(s["f1"], [1.0, 0.0])
  np.testing.assert_allclose(s["area"], [36 / 144, 0.5 * 9 / 144])
  s2 = metrics.localization_scores(
    jnp.asarray(maps), jnp.asarray(gt), gt_masks, jnp.array([0.0, 1.0])
  )
  np.testing.assert_array_equal(s2["om"], [1.0, 1.0])  # right box, wrong class
  # PxAP counts add up over batches to the PxAP of the whole.
  split = [metrics.pxap_counts(jnp.asarray(maps[i : i + 1]), gt_masks[i : i + 1]) for i in (0, 1)]
  summed = jax.tree.map(lambda a, b: a + b, *split)
  np.testing.assert_allclose(
    metrics.pxap_from_counts(summed), metrics.pxap(jnp.asarray(maps), gt_masks), rtol=1e-6
  )


def test_masks_outside_the_unit_interval_and_boxes_outside_the_image_are_refused():
  gt = jnp.array([[[0, 0, 4, 4]]])
  with pytest.raises(
    ValueError,
    match=r"masks must hold values in \[0, 1\]; got values in "
    r"\[-0.5, 1\]",
  ):
    metrics.mask_f1(jnp.full((1, 6, 6), -0.5).at[0, 0, 0].set(1.0), gt)
  with pytest.raises(
    ValueError,
    match=r"masks must hold values in \[0, 1\]; got values in "
    r"\[0, 3\]",
  ):
    metrics.pxap(jnp.full((1, 6, 6), 3.0).at[0, 0, 0].set(0.0), jnp.ones((1, 6, 6)))
  with pytest.raises(ValueError, match=r"maps must hold values in \[0, 1\]"):
    metrics.localization_scores(jnp.full((1, 6, 6), 2.0), gt, jnp.ones((1, 6, 6)), jnp.ones(1))
  with pytest.raises(
    ValueError,
    match=r"gt_boxes must be non-empty .* inside the 6x6 image; "
    r"1 are not, e.g. \[0, 0, 7, 4\]",
  ):
    metrics.mask_f1(jnp.ones((1, 6, 6)), jnp.array([[[0, 0, 7, 4]]]))
  with pytest.raises(ValueError, match=r"boxes must be non-empty .* inside the 6x6 image"):
    metrics.saliency_metric(
      lambda p, x: x.mean((1, 2)),
      None,
      jnp.ones((1, 6, 6, 2)),
      jnp.array([[-1, 0, 3, 3]]),
      jnp.array([0]),
    )
  # Under jit the values are unknown: nothing is checked, nothing fails.
  jax.jit(metrics.pxap)(jnp.full((1, 6, 6), 0.5), jnp.ones((1, 6, 6)))
