"""Competition for pixels (CGI) and VAR against hand-computed answers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsal import attribution as A

# A linear model on 4x4 one-channel images with 3 classes: logits_c =
# sum_u W_c(u) x(u), so gradient x input of class c at pixel u is x(u) W_c(u),
# and the weights decide, by construction, which class wins each pixel.
_W = np.zeros((3, 4, 4), np.float32)
_W[0, :2, :2], _W[1, :2, :2], _W[2, :2, :2] = 3, 1, 1  # top-left: class 0 wins (+)
_W[0, :2, 2:], _W[1, :2, 2:], _W[2, :2, 2:] = 1, 3, 1  # top-right: class 1 wins (+)
_W[0, 2:, :2], _W[1, 2:, :2], _W[2, 2:, :2] = 1, 1, 3  # bottom-left: class 2 wins (+)
_W[0, 2:, 2:], _W[1, 2:, 2:], _W[2, 2:, 2:] = -3, -1, 1  # bottom-right: 2 wins (+), 0 wins (-)
_W[:, 0, 0] = [2, 2, -1]  # a tie: classes 0 and 1 both win (0, 0) (+)
_W[:, 3, 3] = 0  # no class wins where every score is 0


def _linear(w=_W):
  params = {"w": jnp.asarray(w.reshape(w.shape[0], -1).T)}

  def apply_fn(p, x):
    return x.reshape(x.shape[0], -1) @ p["w"]

  return apply_fn, params


def _expected_cgi(sign):
  """CGI maps of classes 0, 1, 2 for the image x = sign * 1, written out by region."""
  e = np.zeros((3, 4, 4), np.float32)
  if sign > 0:
    e[0, :2, :2], e[1, :2, 2:], e[2, 2:, :2] = 3, 3, 3
    e[0, 2:, 2:], e[2, 2:, 2:] = -3, 1  # 0 has the most negative score, 2 the only positive
    e[:, 0, 0] = [2, 2, -1]  # 0 and 1 tie for the largest; 2 is the smallest
  else:  # scores flip sign: the most positive weight becomes the most negative score
    e[0, :2, :2], e[1, :2, 2:], e[2, 2:, :2] = -3, -3, -3
    e[0, 2:, 2:], e[2, 2:, 2:] = 3, -1
    e[:, 0, 0] = [-2, -2, 1]
  e[:, 3, 3] = 0
  return e


def test_cgi_keeps_exactly_the_pixels_each_class_wins_with_both_signs():
  apply_fn, params = _linear()
  x = jnp.stack([jnp.ones((4, 4, 1)), -jnp.ones((4, 4, 1))])
  for cls in range(3):
    got = np.asarray(A.cgi(apply_fn, params, x, jnp.array([cls, cls])))[..., 0]
    np.testing.assert_array_equal(got[0], _expected_cgi(+1)[cls])
    np.testing.assert_array_equal(got[1], _expected_cgi(-1)[cls])
  # The strict-inequality pitfall would give all-zero maps; ties are kept for both.
  got = np.asarray(A.cgi(apply_fn, params, x[:1], jnp.array([0])))[0, ..., 0]
  assert got[0, 0] == 2 and (got != 0).sum() == 4 + 3  # top-left block, bottom-right but (3, 3)


def test_every_class_at_once_equals_one_competition_per_class():
  apply_fn, params = _linear()
  x = jnp.stack([jnp.ones((4, 4, 1)), -jnp.ones((4, 4, 1))])
  # all_classes of a competitive method goes through its class_maps_hook: one
  # set of class maps, competed once.
  every = np.asarray(A.all_classes(A.cgi)(apply_fn, params, x))[..., 0]  # [3, 2, 4, 4]
  for cls in range(3):
    np.testing.assert_array_equal(every[cls, 0], _expected_cgi(+1)[cls])
    np.testing.assert_array_equal(every[cls, 1], _expected_cgi(-1)[cls])
  # Per-image class sets, chunked, through competition(...) and through cgi's own chunk_size.
  classes = jnp.array([[2, 0], [0, 1], [1, 2]])
  want = np.stack([np.asarray(A.cgi(apply_fn, params, x, c)) for c in classes])
  for fn, kw in ((A.competition(A.gradient_x_input, chunk_size=2), {}), (A.cgi, {"chunk_size": 1})):
    got = A.for_classes(fn, classes)(apply_fn, params, x, **kw)
    np.testing.assert_array_equal(np.asarray(got), want)
    jitted = jax.jit(lambda p, x, fn=fn, kw=kw: A.for_classes(fn, classes)(apply_fn, p, x, **kw))
    np.testing.assert_array_equal(np.asarray(jitted(params, x)), want)


def test_competition_from_maps_equals_competition_for_each_target_and_chunks_agree():
  rng = np.random.default_rng(1)
  w = rng.standard_normal((5, 4, 4)).astype(np.float32)
  apply_fn, params = _linear(w)
  x = jnp.asarray(rng.standard_normal((2, 4, 4, 1)), jnp.float32)
  every = A.competition_from_maps(A.all_classes(A.gradient_x_input)(apply_fn, params, x))
  # Each pixel's positive mass goes to at most one class (ties have measure zero here).
  s = np.asarray(every)[..., 0]
  assert ((s > 0).sum(0) <= 1).all() and ((s < 0).sum(0) <= 1).all()
  for t in range(5):
    target = jnp.array([t, 4 - t])
    want = np.stack([np.asarray(every)[t, 0], np.asarray(every)[4 - t, 1]])
    for chunk in (None, 1, 2, 5):
      got = A.competition(A.gradient_x_input, chunk_size=chunk)(apply_fn, params, x, target)
      np.testing.assert_array_equal(np.asarray(got), want)


def test_per_element_competition_lets_each_channel_have_its_own_winner():
  # Two channels: class 0 wins channel 0 and class 1 channel 1 of every pixel,
  # but summed over channels class 1 wins the pixel.
  w = np.zeros((2, 4, 4, 2), np.float32)
  w[0, ..., 0], w[0, ..., 1] = 2, 0
  w[1, ..., 0], w[1, ..., 1] = 1, 3
  apply_fn, params = _linear(w)
  x = jnp.ones((1, 4, 4, 2))
  t0 = jnp.array([0])
  np.testing.assert_array_equal(
    A.competition(A.gradient_x_input, per="element")(apply_fn, params, x, t0)[0],
    np.stack([np.full((4, 4), 2.0), np.zeros((4, 4))], -1),
  )
  np.testing.assert_array_equal(A.competition(A.gradient_x_input)(apply_fn, params, x, t0), 0)
  np.testing.assert_array_equal(
    A.competition(A.gradient_x_input)(apply_fn, params, x, jnp.array([1]))[0],
    np.stack([np.ones((4, 4)), np.full((4, 4), 3.0)], -1),
  )


def _softmax(a, axis=0):
  e = np.exp(a - a.max(axis, keepdims=True))
  return e / e.sum(axis, keepdims=True)


def test_var_matches_a_hand_computation_of_the_softmax_and_threshold():
  # Gradients of the linear model are its weights, the same for every image.
  apply_fn, params = _linear()
  x = jnp.ones((1, 4, 4, 1))
  for t, tau in ((0, 0.1), (1, 0.3), (2, 0.0)):
    got = np.asarray(
      A.var(A.gradient, classes=[0, 1, 2], temperature=10.0, tau=tau)(
        apply_fn, params, x, jnp.array([t])
      )
    )[0, ..., 0]
    p = _softmax(10.0 * np.abs(_W))
    want = _W[t] * p[t] * (p[t] - 1 / 3 > tau)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
  # Two values written out: at the top-left block class 0 has |A| = (3, 1, 1):
  # P_0 = e^30 / (e^30 + 2 e^10), so VAR_0 = 3 * P_0; class 1 has P_1 = e^10 /
  # (e^30 + 2 e^10) ~ 2e-9, under 1/3 + tau, so VAR_1 = 0 there.
  v0 = A.var(A.gradient, classes=[0, 1, 2])(apply_fn, params, x, jnp.array([0]))[0, 1, 1, 0]
  np.testing.assert_allclose(v0, 3 * np.exp(30) / (np.exp(30) + 2 * np.exp(10)), rtol=1e-6)
  v1 = A.var(A.gradient, classes=[0, 1, 2])(apply_fn, params, x, jnp.array([1]))[0, 1, 1, 0]
  assert v1 == 0


def test_var_from_maps_leaves_invalid_slots_out_of_the_softmax_and_of_k():
  maps = jnp.array([[2.0], [1.0], [2.0]])[:, :, None]  # [K=3, B=1, 1]
  valid = jnp.array([[True], [True], [False]])
  got = np.asarray(A.var_from_maps(maps, valid=valid, tau=0.0))[:, 0, 0]
  p = _softmax(np.array([20.0, 10.0]))
  np.testing.assert_allclose(got, [2 * p[0], 0.0, 0.0], rtol=1e-6)  # P_1 - 1/2 < 0: cut


def test_contrastive_set_is_the_official_codes():
  # probabilities by class: 3 > 1 > 0 > 2 (least likely: 2)
  logits = jnp.array([[1.0, 2.0, -5.0, 3.0]] * 3)
  slots, valid = A.contrastive_classes(logits, jnp.array([3, 2, 0]), top_n=2)
  # target in the set: top-2 and the least likely; missing: target first and
  # the least likely dropped (the official code cuts the list to top_n + 1).
  np.testing.assert_array_equal(np.asarray(slots).T, [[3, 1, 2], [3, 1, 2], [0, 3, 1]])
  assert np.asarray(valid).all()
  # Equal probabilities: top-k and argmin can pick the same class; the repeat is invalid.
  slots, valid = A.contrastive_classes(jnp.zeros((1, 4)), jnp.array([0]), top_n=2)
  assert np.asarray(valid).sum() == len(np.unique(np.asarray(slots)))


def test_var_contrastive_equals_var_over_its_class_set():
  rng = np.random.default_rng(2)
  w = rng.standard_normal((6, 4, 4)).astype(np.float32)
  apply_fn, params = _linear(w)
  x = jnp.asarray(rng.standard_normal((3, 4, 4, 1)), jnp.float32)
  target = jnp.array([0, 5, 2])
  got = A.var(A.gradient_x_input)(apply_fn, params, x, target)
  slots, _ = A.contrastive_classes(apply_fn(params, x), target)
  for b in range(3):
    want = A.var(A.gradient_x_input, classes=np.asarray(slots)[:, b], tau=0.01)(
      apply_fn, params, x[b : b + 1], target[b : b + 1]
    )
    np.testing.assert_allclose(got[b], want[0], rtol=1e-6)


def test_batched_equals_per_example_and_jit_equals_eager_with_per_image_class_sets():
  rng = np.random.default_rng(3)
  w = rng.standard_normal((6, 4, 4)).astype(np.float32)
  apply_fn, params = _linear(w)
  x = jnp.asarray(rng.standard_normal((3, 4, 4, 1)), jnp.float32)
  classes = jnp.array([[0, 1, 2, 3], [5, 4, 3, 2], [1, 3, 5, 0]]).T  # [K, B]
  target = jnp.array([2, 5, 0])
  fns = {"var": A.var(A.integrated_gradients), "cgi": A.competition(A.integrated_gradients)}
  for name, fn in fns.items():
    kw = {"classes": classes} if name == "var" else {}
    eager = fn(apply_fn, params, x, target, steps=4, **kw)
    jitted = jax.jit(
      lambda x, t, c: fn(
        apply_fn, params, x, t, steps=4, **({"classes": c} if name == "var" else {})
      )
    )
    np.testing.assert_allclose(jitted(x, target, classes), eager, rtol=1e-5, atol=1e-7)
    for b in range(3):
      one = fn(
        apply_fn,
        params,
        x[b : b + 1],
        target[b : b + 1],
        steps=4,
        **({"classes": classes[:, b : b + 1]} if name == "var" else {}),
      )
      np.testing.assert_allclose(one[0], eager[b], rtol=1e-5, atol=1e-7)


def test_bad_input_is_named():
  apply_fn, params = _linear()
  x, t = jnp.ones((1, 4, 4, 1)), jnp.array([0])
  with pytest.raises(ValueError, match="non-empty"):
    A.var(A.gradient, classes=[])(apply_fn, params, x, t)
  with pytest.raises(ValueError, match="must not repeat"):
    A.var(A.gradient, classes=[0, 1, 0])(apply_fn, params, x, t)
  with pytest.raises(ValueError, match=r"must lie in \[0, 3\).*\[7\]"):
    A.var(A.gradient, classes=[0, 7])(apply_fn, params, x, t)
  with pytest.raises(ValueError, match="target must be in its class set"):
    A.var(A.gradient, classes=[1, 2])(apply_fn, params, x, t)
  for bad in (0, -1.0, float("nan")):
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
      A.var(A.gradient, temperature=bad)
  for bad in (-0.1, 1.0, 2):
    with pytest.raises(ValueError, match=r"tau must be a number in \[0, 1\)"):
      A.var(A.gradient, tau=bad)
  with pytest.raises(ValueError, match="top_n must be < the number of classes"):
    A.var(A.gradient, top_n=3)(apply_fn, params, x, t)
  with pytest.raises(ValueError, match="unknown classes .top.; known: all, contrastive"):
    A.var(A.gradient, classes="top")
  with pytest.raises(ValueError, match="unknown per .channel.; known: element, pixel"):
    A.competition(A.gradient, per="channel")
  with pytest.raises(ValueError, match="chunk_size"):
    A.competition(A.gradient, chunk_size=0)
  with pytest.raises(ValueError, match="target must lie in"):
    A.cgi(apply_fn, params, x, jnp.array([3]))


def test_var_over_all_classes_in_chunks_equals_all_at_once_and_the_hand_formula():
  rng = np.random.default_rng(4)
  w = rng.standard_normal((5, 4, 4)).astype(np.float32)
  apply_fn, params = _linear(w)
  x = jnp.asarray(rng.standard_normal((2, 4, 4, 1)), jnp.float32)
  target = jnp.array([1, 4])
  whole = A.var(A.gradient_x_input, classes="all")(apply_fn, params, x, target)
  chunked = A.var(A.gradient_x_input, classes="all", chunk_size=2)(apply_fn, params, x, target)
  np.testing.assert_allclose(chunked, whole, rtol=1e-6)
  a = np.asarray(x)[None, ..., 0] * w[:, None]  # [K, B, 4, 4]
  p = _softmax(10.0 * np.abs(a))
  for b, t in enumerate([1, 4]):
    want = a[t, b] * p[t, b] * (p[t, b] - 1 / 5 > 0.1)
    np.testing.assert_allclose(np.asarray(whole)[b, ..., 0], want, rtol=1e-5, atol=1e-7)


def test_a_methods_own_chunk_size_reaches_it_through_competition_and_var():
  # RISE has its own chunk_size (masks per forward pass); it must not be
  # taken for the class chunking, and all classes share one set of masks.
  rng = np.random.default_rng(5)
  apply_fn, params = _linear(rng.standard_normal((3, 4, 4)).astype(np.float32))
  x = jnp.asarray(rng.random((2, 4, 4, 1)), jnp.float32)
  t = jnp.array([2, 0])
  kw = dict(key=jax.random.key(0), num_masks=12, grid_size=2, chunk_size=5)
  every = A.all_classes(A.rise)(apply_fn, params, x, **kw)
  comp = A.competition_from_maps(every)
  np.testing.assert_allclose(
    A.competition(A.rise)(apply_fn, params, x, t, **kw),
    np.stack([comp[2, 0], comp[0, 1]]),
    rtol=1e-6,
  )
  v = A.var_from_maps(every, tau=0.1)
  np.testing.assert_allclose(
    A.var(A.rise, classes="all")(apply_fn, params, x, t, **kw),
    np.stack([v[2, 0], v[0, 1]]),
    rtol=1e-6,
  )
