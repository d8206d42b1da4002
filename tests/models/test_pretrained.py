"""torchvision ResNet weights -> jaxsal ResNet: the same logits, and clear refusals."""

import importlib.util
import os

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from jaxsal.models import pretrained

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _torch_resnet():
  spec = importlib.util.spec_from_file_location(
    "_torch_resnet", os.path.join(ROOT, "benchmarks", "_torch_resnet.py")
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope="module")
def r18():
  net = _torch_resnet().build("resnet18", num_classes=7, seed=3)
  return net, {k: v.detach().numpy() for k, v in net.state_dict().items()}


def _logits(net, x_nhwc):
  with torch.no_grad():
    return net(torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))).numpy()


@pytest.mark.parametrize("arch,size", [("resnet18", 64), ("resnet50", 32)])
def test_converted_weights_give_the_torch_models_logits(arch, size):
  net = _torch_resnet().build(arch, num_classes=1000, seed=1)
  model, variables = None, pretrained.resnet_variables_from_torchvision(net.state_dict(), arch)
  model = pretrained.ARCHITECTURES[arch](num_classes=1000)
  x = np.random.default_rng(0).uniform(0, 1, (2, size, size, 3)).astype(np.float32)
  x = np.asarray(pretrained.imagenet_normalize(x), np.float32)
  ours = np.asarray(jax.jit(model.apply)(variables, x))
  theirs = _logits(net, x)
  scale = np.abs(theirs).max()
  assert scale > 1e-2
  np.testing.assert_allclose(ours, theirs, atol=2e-4 * scale, rtol=0)
  assert (ours.argmax(-1) == theirs.argmax(-1)).all()


def test_safetensors_and_pth_files_load_to_the_same_variables(tmp_path, r18):
  from safetensors.numpy import save_file

  net, sd = r18
  save_file({k: np.ascontiguousarray(v) for k, v in sd.items()}, str(tmp_path / "w.safetensors"))
  torch.save(net.state_dict(), tmp_path / "w.pth")
  m1, v1 = pretrained.load_torchvision_resnet("resnet18", str(tmp_path / "w.safetensors"))
  m2, v2 = pretrained.load_torchvision_resnet("resnet18", str(tmp_path / "w.pth"))
  assert m1.num_classes == m2.num_classes == 7
  jax.tree.map(np.testing.assert_array_equal, v1, v2)
  np.testing.assert_array_equal(
    v1["params"]["layer2_0"]["downsample_conv"]["kernel"],
    sd["layer2.0.downsample.0.weight"].transpose(2, 3, 1, 0),
  )
  np.testing.assert_array_equal(
    v1["batch_stats"]["layer4_1"]["bn2"]["var"], sd["layer4.1.bn2.running_var"]
  )


def test_missing_extra_and_misshaped_keys_are_listed(r18):
  _, sd = r18
  bad = dict(sd)
  del bad["layer3.1.bn2.running_mean"]
  del bad["fc.bias"]
  bad["head.weight"] = np.zeros((7, 512), np.float32)
  bad["layer1.0.conv1.weight"] = np.zeros((64, 64, 5, 5), np.float32)
  with pytest.raises(ValueError) as e:
    pretrained.resnet_variables_from_torchvision(bad, "resnet18")
  msg = str(e.value)
  assert "missing keys (2): fc.bias, layer3.1.bn2.running_mean" in msg
  assert "unexpected keys (1): head.weight" in msg
  assert "layer1.0.conv1.weight (64, 64, 5, 5)" in msg and "expected (3, 3, 64, 64)" in msg
  # A ResNet-18 file read as a ResNet-50 one: its keys do not fit.
  with pytest.raises(ValueError, match="does not fit resnet50: missing keys"):
    pretrained.resnet_variables_from_torchvision(sd, "resnet50")
  with pytest.raises(
    ValueError, match="arch must be one of resnet18, resnet34, resnet50; got 'vgg'"
  ):
    pretrained.resnet_variables_from_torchvision(sd, "vgg")


class _NotWeights:
  pass


def test_files_that_are_not_state_dicts_are_refused_without_unpickling(tmp_path):
  torch.save({"model": _NotWeights()}, tmp_path / "obj.pth")
  with pytest.raises(ValueError, match="weights_only=True"):
    pretrained.load_state_dict(str(tmp_path / "obj.pth"))
  (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
  with pytest.raises(ValueError, match="not a readable safetensors file"):
    pretrained.load_state_dict(str(tmp_path / "junk.safetensors"))
  torch.save([torch.zeros(2)], tmp_path / "list.pth")
  with pytest.raises(ValueError, match="holds a list, not a state dict"):
    pretrained.load_state_dict(str(tmp_path / "list.pth"))
  with pytest.raises(FileNotFoundError, match="does not exist"):
    pretrained.load_state_dict(str(tmp_path / "nothing.pth"))


def test_imagenet_class_names_are_in_the_order_of_the_logits():
  names = pretrained.imagenet_class_names()
  short = pretrained.imagenet_class_names(short=True)
  assert len(names) == len(set(names)) == 1000
  # Well-known indices of ImageNet-1k (torchvision's and Keras's order).
  assert {i: short[i] for i in (0, 1, 207, 281, 409, 817, 967)} == {
    0: "tench",
    1: "goldfish",
    207: "golden retriever",
    281: "tabby",
    409: "analog clock",
    817: "sports car",
    967: "espresso",
  }
  assert names[281] == "tabby, tabby cat"
  import sys

  assert "tensorflow" not in sys.modules  # read from tensorflow-datasets' files, not TensorFlow
