"""Similarity measures against scipy and scikit-image on random maps."""

import jax
import numpy as np
import pytest
from scipy import stats
from skimage.feature import hog as sk_hog
from skimage.metrics import structural_similarity

from jaxsal import sanity
from jaxsal.attribution import normalize_abs, normalize_diverging


@pytest.fixture(scope="module")
def maps():
  rng = np.random.default_rng(0)
  a = rng.random((3, 64, 48)).astype(np.float32)
  b = (a + rng.standard_normal((3, 64, 48)) * 0.3).astype(np.float32)
  a[0, :12, :12] = 0.25  # ties, which spearman must rank by their average
  b[1] = np.round(b[1], 1)
  return a, b


def test_spearman_equals_scipy(maps):
  a, b = maps
  want = [stats.spearmanr(a[i].ravel(), b[i].ravel())[0] for i in range(3)]
  np.testing.assert_allclose(sanity.spearman(a, b), want, atol=1e-4)
  np.testing.assert_allclose(jax.jit(sanity.spearman)(a, b), want, atol=1e-4)


def test_ssim_equals_skimage_with_gaussian_weights(maps):
  a, b = maps
  b = (b - b.min()) / (b.max() - b.min())
  for sigma in (1.5, 1.0):
    want = [
      structural_similarity(
        a[i], b[i], data_range=1.0, gaussian_weights=True, sigma=sigma, use_sample_covariance=False
      )
      for i in range(3)
    ]
    np.testing.assert_allclose(sanity.ssim(a, b, sigma=sigma), want, atol=1e-4)
  np.testing.assert_allclose(sanity.ssim(a, a), 1.0, atol=1e-6)


def test_hog_equals_skimage(maps):
  a, _ = maps
  for ppc, cpb in ((16, 3), (8, 2)):
    want = np.stack(
      [
        sk_hog(
          a[i],
          orientations=9,
          pixels_per_cell=(ppc, ppc),
          cells_per_block=(cpb, cpb),
          block_norm="L2-Hys",
        )
        for i in range(3)
      ]
    )
    got = sanity.hog(a, pixels_per_cell=ppc, cells_per_block=cpb)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_similarity_is_the_papers_four_numbers(maps):
  a, b = maps
  a4, b4 = a[..., None] - 0.5, b[..., None] - 0.5  # signed maps [B, H, W, 1]
  got = sanity.similarity(a4, b4)
  abs_a, abs_b = np.asarray(normalize_abs(a4)), np.asarray(normalize_abs(b4))
  div_a, div_b = np.asarray(normalize_diverging(a4)), np.asarray(normalize_diverging(b4))
  mm = lambda m: (
    (np.abs(m[..., 0]) - np.abs(m[..., 0]).min((1, 2), keepdims=True))
    / np.ptp(np.abs(m[..., 0]).reshape(3, -1), 1)[:, None, None]
  )
  ma, mb = mm(a4), mm(b4)
  for i in range(3):
    np.testing.assert_allclose(
      got["spearman_abs"][i], stats.spearmanr(abs_a[i].ravel(), abs_b[i].ravel())[0], atol=1e-4
    )
    np.testing.assert_allclose(
      got["spearman_diverging"][i],
      stats.spearmanr(div_a[i].ravel(), div_b[i].ravel())[0],
      atol=1e-4,
    )
    np.testing.assert_allclose(
      got["ssim"][i],
      structural_similarity(
        ma[i], mb[i], data_range=1.0, gaussian_weights=True, use_sample_covariance=False
      ),
      atol=1e-4,
    )
    h = lambda m: sk_hog(m, pixels_per_cell=(16, 16), cells_per_block=(3, 3))
    np.testing.assert_allclose(got["hog"][i], stats.spearmanr(h(ma[i]), h(mb[i]))[0], atol=1e-4)
  same = sanity.similarity(a4, a4)
  for v in same.values():
    np.testing.assert_allclose(v, 1.0, atol=1e-5)


def test_maps_of_different_shapes_are_refused():
  a, b = np.zeros((2, 32, 32, 1)), np.zeros((2, 32, 16, 1))
  with pytest.raises(ValueError, match=r"same shape; got \(2, 32, 32, 1\) and \(2, 32, 16, 1\)"):
    sanity.similarity(a, b)
  with pytest.raises(ValueError, match="spearman: the two batches"):
    sanity.spearman(a[..., 0], b[..., 0])
  with pytest.raises(ValueError, match="too small for blocks of 3 cells"):
    sanity.hog(np.zeros((1, 32, 32)))
