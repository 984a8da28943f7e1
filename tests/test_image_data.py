"""Item images in the data and the feature cache: tabular image_dir / image_column, the prepared-data cache and
reindexing, the image feature cache and its keys, and the synthetic pictures that carry the item factors."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from test_image_backbones import PIL, picture

from translearn.content import ItemCatalog
from translearn.content import image as images
from translearn.data.prepare import prepare
from translearn.data.sources import TabularSource
from translearn.errors import UserError


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
    with pytest.raises(UserError, match="model.content.item_tower: domain 'books' has no item images"):
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
