"""Tests for the grid composer of the grid pointing game."""

import numpy as np
import pytest

from jaxsal import data as jdata


def _toy(num=60, size=8, classes=10, seed=0):
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, size=(num, size, size, 1), dtype=np.uint8)
  labels = np.arange(num) % classes
  y0 = rng.integers(0, size // 2, size=num)
  x0 = rng.integers(0, size // 2, size=num)
  boxes = np.stack([y0, x0, y0 + size // 2, x0 + 3], axis=1).astype(np.int32)
  masks = np.zeros((num, size, size), np.uint8)
  for m, (a, b, c, d) in zip(masks, boxes):
    m[a:c, b:d] = 1
  return images, labels, boxes, masks


@pytest.mark.parametrize("n", [1, 2, 3])
def test_cells_hold_distinct_classes_and_the_chosen_images(n):
  images, labels, boxes, masks = _toy()
  g = jdata.compose_grids(images, labels, n=n, num_grids=20, seed=1, boxes=boxes, masks=masks)
  s = 8
  assert g["image"].shape == (20, n * s, n * s, 1) and g["image"].dtype == np.uint8
  assert g["labels"].shape == (20, n * n) and g["indices"].shape == (20, n * n)
  for grid in range(20):
    assert len(set(g["labels"][grid].tolist())) == n * n
    np.testing.assert_array_equal(g["labels"][grid], labels[g["indices"][grid]])
    for k, (y0, x0, y1, x1) in enumerate(g["cell_boxes"][grid]):
      np.testing.assert_array_equal(g["image"][grid, y0:y1, x0:x1], images[g["indices"][grid, k]])


@pytest.mark.parametrize("n", [2, 3])
def test_cell_boxes_tile_the_grid(n):
  images, labels, _, _ = _toy(size=6)
  g = jdata.compose_grids(images, labels, n=n, num_grids=2, seed=0)
  for boxes in g["cell_boxes"]:
    cover = np.zeros((n * 6, n * 6), np.int32)
    for y0, x0, y1, x1 in boxes:
      assert (y1 - y0, x1 - x0) == (6, 6)
      cover[y0:y1, x0:x1] += 1
    assert (cover == 1).all()
    # Row-major order.
    assert boxes[1].tolist() == [0, 6, 6, 12] and boxes[n].tolist() == [6, 0, 12, 6]


def test_boxes_and_masks_move_into_grid_coordinates():
  images, labels, boxes, masks = _toy()
  g = jdata.compose_grids(images, labels, n=2, num_grids=10, seed=2, boxes=boxes, masks=masks)
  for grid in range(10):
    for k in range(4):
      cy, cx = g["cell_boxes"][grid, k, :2]
      src = g["indices"][grid, k]
      np.testing.assert_array_equal(g["boxes"][grid, k], boxes[src] + [cy, cx, cy, cx])
      ys, xs = np.nonzero(g["mask"][grid] == k + 1)
      assert [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1] == g["boxes"][grid, k].tolist()
      assert (g["mask"][grid] == k + 1).sum() == masks[src].sum()
  assert set(np.unique(g["mask"]).tolist()) == {0, 1, 2, 3, 4}


def test_deterministic_and_seeded():
  images, labels, _, _ = _toy()
  a = jdata.compose_grids(images, labels, n=3, num_grids=5, seed=4)
  b = jdata.compose_grids(images, labels, n=3, num_grids=5, seed=4)
  c = jdata.compose_grids(images, labels, n=3, num_grids=5, seed=5)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  assert not np.array_equal(a["indices"], c["indices"])


def test_float_images_and_non_square_cells():
  images = np.random.default_rng(0).random((12, 5, 7, 3)).astype(np.float32)
  g = jdata.compose_grids(images, np.arange(12) % 4, n=2, num_grids=3, seed=0)
  assert g["image"].shape == (3, 10, 14, 3) and g["image"].dtype == np.float32
  assert g["cell_boxes"][0, 3].tolist() == [5, 7, 10, 14]


def test_errors():
  images, labels, boxes, masks = _toy(classes=3)
  with pytest.raises(ValueError, match="needs 4 distinct classes; labels has only 3"):
    jdata.compose_grids(images, labels, n=2, num_grids=1, seed=0)
  with pytest.raises(ValueError, match="images must have shape"):
    jdata.compose_grids(images[..., 0], labels, n=1, num_grids=1, seed=0)
  with pytest.raises(ValueError, match="labels must have shape"):
    jdata.compose_grids(images, labels[:-1], n=1, num_grids=1, seed=0)
  with pytest.raises(ValueError, match="boxes must have shape"):
    jdata.compose_grids(images, labels, n=1, num_grids=1, seed=0, boxes=boxes[:, :2])
  with pytest.raises(ValueError, match="masks must have shape"):
    jdata.compose_grids(images, labels, n=1, num_grids=1, seed=0, masks=masks[:, :4])
  with pytest.raises(ValueError, match="n must be a positive integer"):
    jdata.compose_grids(images, labels, n=0, num_grids=1, seed=0)


def test_grids_of_cluttered_digits(small_data):
  test = small_data["test"]
  g = jdata.compose_grids(
    test["image"], test["label"], n=3, num_grids=8, seed=0, boxes=test["box"], masks=test["mask"]
  )
  assert g["image"].shape == (8, 96, 96, 1)
  for grid in range(8):
    assert len(set(g["labels"][grid].tolist())) == 9
    for k in range(9):
      ys, xs = np.nonzero(g["mask"][grid] == k + 1)
      assert [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1] == g["boxes"][grid, k].tolist()
