"""Readers in translearn.data.sources: handmade fixtures per format, every error case, and the real data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from translearn.data.errors import DataError
from translearn.data.schema import MISSING, CrossDomainData
from translearn.data.sources import AmazonArtsOffice, DataSource, DisenCDRPair, MovieLens
from translearn.data.sources.disencdr_pair import FILES
from translearn.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def rows(data: CrossDomainData, domain: str, with_order: bool = False) -> list[tuple]:
    """Interactions of a domain as sorted (raw user, raw item[, order]) tuples."""
    dom = data.domain(domain)
    inter = dom.interactions
    out = []
    for k in range(len(inter)):
        u = None if inter.users[k] == MISSING else data.user_ids[inter.users[k]].item()
        i = None if inter.items[k] == MISSING else dom.item_ids[inter.items[k]].item()
        out.append((u, i, inter.order[k].item()) if with_order else (u, i))
    return sorted(out, key=repr)


def unique_pairs(data: CrossDomainData, domain: str) -> int:
    inter = data.domain(domain).interactions
    return len(np.unique(np.stack([inter.users, inter.items], axis=1), axis=0))


# ---------------------------------------------------------------- Amazon Arts <-> Office (URLLM format)

HEADER = "idBefore,item_title,idAfter,item_attribute\n"
ARTS = HEADER + '0,red paint,0,arts paint acme\n1,"brush, round",1,arts brush\n2,canvas,2,arts canvas\n'
OFFICE = HEADER + "0,stapler,3,office staplers\n1,pen,4,office pens\n2,unused desk,5,office desks\n"
TRAIN = "5\t2\t0|0|0\t3|1|1\t1|2|2\t\n5\t2\t0|0|0\t3|1|1\t4|2|2\t\n"
VALID = "7\t2\t2|0|0\t4|1|1\t2|2|2\t\n7\t2\t2|0|0\t4|1|1\t3|2|2\t\n"
TEST = "9\t1\t1|0|0\t4|1|1\t\n9\t1\t1|0|0\t0|1|1\t\n"


def arts_office(tmp_path: Path, **override: str) -> Path:
    files = {"item_listA_F.csv": ARTS, "item_listO_AA_F.csv": OFFICE, "train_F2.txt": TRAIN,
             "valid_F2.txt": VALID, "test_F2.txt": TEST} | override
    for name, text in files.items():
        write(tmp_path / "raw" / name, text)
    return tmp_path / "raw"


def test_arts_office_fixture(tmp_path: Path) -> None:
    data = AmazonArtsOffice(arts_office(tmp_path)).load()
    assert data.domain_names == ["arts", "office"]
    assert data.user_ids.tolist() == [5, 7, 9]
    # the two-line format's repeated records are dropped; item 2 at positions 0 and 2 is a real repeat
    arts_rows = [(5, 0, 0.0), (5, 1, 2.0), (7, 2, 0.0), (7, 2, 2.0), (9, 0, 1.0), (9, 1, 0.0)]
    assert rows(data, "arts", True) == arts_rows
    assert rows(data, "office", True) == [(5, 3, 1.0), (5, 4, 2.0), (7, 3, 2.0), (7, 4, 1.0), (9, 4, 1.0)]
    arts, office = data.domain("arts"), data.domain("office")
    assert arts.item_ids.tolist() == [0, 1, 2] and office.item_ids.tolist() == [3, 4, 5]
    assert arts.item_text.tolist() == ["red paint", "brush, round", "canvas"]
    assert office.item_attributes.tolist() == ["office staplers", "office pens", "office desks"]
    assert arts.interactions.ratings is None
    assert isinstance(AmazonArtsOffice(tmp_path / "raw"), DataSource)


def test_arts_office_fingerprint(tmp_path: Path) -> None:
    root = arts_office(tmp_path)
    first = AmazonArtsOffice(root).fingerprint()
    assert AmazonArtsOffice(root).fingerprint() == first
    write(root / "test_F2.txt", TEST.replace("0|1|1", "2|1|1"))
    assert AmazonArtsOffice(root).fingerprint() != first


@pytest.mark.parametrize(("override", "where", "words"), [
    ({"train_F2.txt": TRAIN.replace("4|2|2", "4|x|2")}, "train_F2.txt, line 2", "'4|x|2'"),
    ({"valid_F2.txt": VALID + "8\t2\n"}, "valid_F2.txt, line 3", "field"),
    ({"valid_F2.txt": "\n" + VALID.replace("3|2|2", "3|2")}, "valid_F2.txt, line 3", "'3|2'"),
    ({"test_F2.txt": TEST.replace("0|1|1", "99|1|1")}, "test_F2.txt, line 2", "item 99"),
    ({"test_F2.txt": "nine\t1\t1|0|0\n"}, "test_F2.txt, line 1", "integer"),
    ({"item_listA_F.csv": ARTS.replace("item_title", "title")}, "item_listA_F.csv", "'item_title'"),
    ({"item_listO_AA_F.csv": OFFICE.replace(",4,", ",four,")}, "item_listO_AA_F.csv, line 3", "'four'"),
    ({"item_listO_AA_F.csv": OFFICE.replace(",3,", ",2,")}, "item_listO_AA_F.csv", "both"),
])
def test_arts_office_errors(tmp_path: Path, override: dict, where: str, words: str) -> None:
    with pytest.raises(DataError) as err:
        AmazonArtsOffice(arts_office(tmp_path, **override)).load()
    assert where in str(err.value) and words in str(err.value)


def test_arts_office_missing_file(tmp_path: Path) -> None:
    root = arts_office(tmp_path)
    (root / "valid_F2.txt").unlink()
    with pytest.raises(DataError, match="missing: valid_F2.txt"):
        AmazonArtsOffice(root).load()


# ---------------------------------------------------------------- DisenCDR pair

def disencdr(tmp_path: Path, **override: str) -> Path:
    files = {
        "cs/train.txt": "0\t10\t1\n0\t11\t1\n1\t10\t1\n",
        "cs/test.txt": "0\t12\t1\n",
        "cs/test_original.txt": "0\t12\n1\t10\t1\n2\t13\n",
        "sc/train.txt": "0\t5\t1\n2\t5\t1\n2\t5\t1\n",
        "sc/test.txt": "",
        "sc/test_original.txt": "0\t6\t1\n1\t7\t1\n2\t5\t1\n",
    } | {k.replace("__", "/"): v for k, v in override.items()}
    for name, text in files.items():
        write(tmp_path / name, text)
    return tmp_path


def test_disencdr_fixture(tmp_path: Path) -> None:
    data = DisenCDRPair(disencdr(tmp_path), "books", "music", "cs", "sc").load()
    assert data.domain_names == ["books", "music"]
    assert data.user_ids.tolist() == [0, 1, 2]
    assert rows(data, "books") == [(0, 10), (0, 11), (0, 12), (1, 10), (2, 13)]
    assert rows(data, "music") == [(0, 5), (0, 6), (1, 7), (2, 5)]
    assert data.domain("books").item_ids.tolist() == [10, 11, 12, 13]
    inter = data.domain("music").interactions
    assert inter.order is None and inter.ratings is None and data.domain("music").item_text is None


def test_disencdr_fingerprint(tmp_path: Path) -> None:
    root = disencdr(tmp_path)
    a = DisenCDRPair(root, "books", "music", "cs", "sc").fingerprint()
    assert a == DisenCDRPair(root, "books", "music", "cs", "sc").fingerprint()
    assert a != DisenCDRPair(root, "music", "books", "cs", "sc").fingerprint()


def test_disencdr_chosen_files(tmp_path: Path) -> None:
    root = disencdr(tmp_path)
    data = DisenCDRPair(root, "books", "music", "cs", "sc", files_a=["train.txt"],
                        files_b=["train.txt", "test_original.txt"]).load()
    assert rows(data, "books") == [(0, 10), (0, 11), (1, 10)]
    assert rows(data, "music") == [(0, 5), (0, 6), (1, 7), (2, 5)]
    default = DisenCDRPair(root, "books", "music", "cs", "sc")
    assert default.fingerprint() == DisenCDRPair(root, "books", "music", "cs", "sc", files_a=list(FILES),
                                                 files_b=list(FILES)).fingerprint()  # keys of before hold
    assert default.fingerprint() != DisenCDRPair(root, "books", "music", "cs", "sc",
                                                 files_a=["train.txt"]).fingerprint()
    with pytest.raises(ConfigError, match=r"data.dataset.files_b must list distinct files of train.txt"):
        DisenCDRPair(root, "books", "music", "cs", "sc", files_b=["valid.txt"])


@pytest.mark.parametrize(("override", "where", "words"), [
    ({"cs__train.txt": "0\t10\t1\n0\tten\t1\n"}, "cs/train.txt, line 2, column 'item'", "'ten'"),
    ({"sc__test.txt": "0\t5\n\n0\t5\t1\t9\n"}, "sc/test.txt, line 3", "expected 3 fields, saw 4"),
    ({"sc__test_original.txt": "0\t6\t1\n7\n"}, "sc/test_original.txt, line 2", "item field"),
])
def test_disencdr_errors(tmp_path: Path, override: dict, where: str, words: str) -> None:
    with pytest.raises(DataError) as err:
        DisenCDRPair(disencdr(tmp_path, **override), "books", "music", "cs", "sc").load()
    assert where in str(err.value).replace(os.sep, "/") and words in str(err.value)


def test_disencdr_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing: train.txt"):
        DisenCDRPair(disencdr(tmp_path), "books", "music", folder_a="nope", folder_b="sc").load()


# ---------------------------------------------------------------- MovieLens (RecBole atomic files)

INTER = "item_id:token\tuser_id:token\ttimestamp:float\trating:float\n" \
        "1\t7\t100\t4\n2\t7\t50\t3.5\n1\t8\t70\t5\n"
ITEMS = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n" \
        '1\t"Weird" Movie\t1995\tComedy Drama\n2\tOther\t\tAction\n3\tNever Rated\t2001\tHorror\n'


def movielens(tmp_path: Path, inter: str = INTER, items: str | None = ITEMS) -> Path:
    write(tmp_path / "ml-tiny.inter", inter)
    if items is not None:
        write(tmp_path / "ml-tiny.item", items)
    return tmp_path


def test_movielens_fixture(tmp_path: Path) -> None:
    data = MovieLens(movielens(tmp_path), name="ml-tiny").load()
    assert data.domain_names == ["movies"]
    assert data.user_ids.tolist() == [7, 8]
    dom = data.domain("movies")
    assert dom.item_ids.tolist() == [1, 2, 3]
    assert rows(data, "movies", True) == [(7, 1, 100.0), (7, 2, 50.0), (8, 1, 70.0)]
    assert dom.interactions.ratings.tolist() == [4.0, 3.5, 5.0]
    assert dom.item_text.tolist() == ['"Weird" Movie', "Other", "Never Rated"]
    assert dom.item_attributes.tolist() == ["Comedy Drama 1995", "Action", "Horror 2001"]


def test_movielens_optional_parts(tmp_path: Path) -> None:
    root = movielens(tmp_path, "user_id:token\titem_id:token\n7\t1\n", items=None)
    data = MovieLens(root, name="ml-tiny", domain="films").load()
    dom = data.domain("films")
    assert dom.interactions.ratings is None and dom.interactions.order is None and dom.item_text is None
    fp = MovieLens(root, name="ml-tiny", domain="films").fingerprint()
    assert fp != MovieLens(root, name="ml-tiny").fingerprint()


def test_movielens_genre_domains(tmp_path: Path) -> None:
    genres = {"comedy": ["Comedy"], "rest": ["*"]}
    data = MovieLens(movielens(tmp_path), name="ml-tiny", genre_domains=genres).load()
    assert data.domain_names == ["comedy", "rest"]
    assert rows(data, "comedy", True) == [(7, 1, 100.0), (8, 1, 70.0)]
    assert rows(data, "rest", True) == [(7, 2, 50.0)]
    assert data.domain("comedy").item_ids.tolist() == [1]
    assert data.domain("rest").item_ids.tolist() == [2, 3]           # the unrated movie stays in the catalogue
    assert data.domain("rest").item_attributes.tolist() == ["Action", "Horror 2001"]
    assert data.domain("comedy").interactions.ratings.tolist() == [4.0, 5.0]
    plain = MovieLens(tmp_path, name="ml-tiny").fingerprint()
    assert MovieLens(tmp_path, name="ml-tiny", genre_domains=genres).fingerprint() != plain


def test_movielens_genre_domains_errors(tmp_path: Path) -> None:
    root = movielens(tmp_path)
    with pytest.raises(DataError) as err:
        MovieLens(root, name="ml-tiny", genre_domains={"comedy": ["Comedy"]}).load()
    assert "ml-tiny.inter" in str(err.value) and "item ids 2" in str(err.value) and "['*']" in str(err.value)
    bare = movielens(tmp_path / "bare", items=None)
    with pytest.raises(DataError, match=r"ml-tiny.item.*'class'"):
        MovieLens(bare, name="ml-tiny", genre_domains={"all": ["*"]}).load()


@pytest.mark.parametrize(("inter", "items", "where", "words"), [
    (INTER.replace("user_id:token", "uid:token"), ITEMS, "ml-tiny.inter, column 'user_id'", "uid:token"),
    (INTER.replace("3.5", "good"), ITEMS, "ml-tiny.inter, line 3, column 'rating'", "'good'"),
    (INTER.replace("\t70\t", "\tsoon\t"), ITEMS, "ml-tiny.inter, line 4, column 'timestamp'", "'soon'"),
    (INTER, ITEMS.replace("item_id:token", "id:token"), "ml-tiny.item, column 'item_id'", "not found"),
    (INTER + "9\t9\t9\t9\t9\n", ITEMS, "ml-tiny.inter, line 5", "expected 4 fields, saw 5"),
])
def test_movielens_errors(tmp_path: Path, inter: str, items: str, where: str, words: str) -> None:
    with pytest.raises(DataError) as err:
        MovieLens(movielens(tmp_path, inter, items), name="ml-tiny").load()
    assert where in str(err.value) and words in str(err.value)


# ---------------------------------------------------------------- the real data sets (README numbers)

DATA = Path(os.environ.get("TRANSLEARN_DATA_ROOT")
            or Path(__file__).resolve().parents[1].parent / "shared" / "data")


def real(folder: str) -> Path:
    path = DATA / folder
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (set TRANSLEARN_DATA_ROOT to the shared data folder)")
    return path


@pytest.fixture(scope="module")
def arts_office_real() -> CrossDomainData:
    return AmazonArtsOffice(real("amazon-arts-office") / "raw").load()


@pytest.fixture(scope="module")
def cloth_sport_real() -> CrossDomainData:
    return DisenCDRPair(real("amazon-cloth-sport"), "clothing", "sports", "cloth_sport", "sport_cloth").load()


@pytest.fixture(scope="module")
def movielens_real() -> CrossDomainData:
    return MovieLens(real("movielens-100k")).load()


def test_real_arts_office(arts_office_real: CrossDomainData) -> None:
    data = arts_office_real
    assert data.num_users == 9577
    assert len(data.overlapping_users("arts", "office")) == 9577
    arts, office = data.domain("arts"), data.domain("office")
    assert arts.num_items == 18639 and office.num_items == 19757  # the Office catalog lists unused items
    assert len(np.unique(office.interactions.items)) == 15780
    assert unique_pairs(data, "arts") == 110016 and unique_pairs(data, "office") == 96645
    assert (arts.item_text != "").all() and (office.item_text != "").all()
    assert arts.interactions.order is not None and arts.interactions.ratings is None


def test_real_cloth_sport(cloth_sport_real: CrossDomainData) -> None:
    data = cloth_sport_real
    assert data.num_users == 9928 and len(data.overlapping_users("clothing", "sports")) == 9928
    clothing, sports = data.domain("clothing"), data.domain("sports")
    assert clothing.num_items == 41303 and sports.num_items == 32310
    assert len(clothing.interactions) == unique_pairs(data, "clothing") == 97757
    assert len(sports.interactions) == unique_pairs(data, "sports") == 102540


def test_real_movielens(movielens_real: CrossDomainData) -> None:
    dom = movielens_real.domain("movies")
    assert movielens_real.num_users == 943 and dom.num_items == 1682 and len(dom.interactions) == 100000
    ratings = dom.interactions.ratings
    assert ratings.min() == 1 and ratings.max() == 5
    assert dom.item_text[0] == "Toy Story" and dom.item_attributes[0] == "Animation Children's Comedy 1995"


# ---------------------------------------------------------------- DisenCDR configs (data=disencdr_pair, cloth_sport)

PAIR_KEYS = {"root": None, "domain_a": "music", "domain_b": "books", "folder_a": "sc", "folder_b": "cs"}


def test_cloth_sport_is_a_preset_of_disencdr_pair() -> None:
    from translearn.cli.config import compose

    data = compose(["data=cloth_sport"]).data
    assert (data.name, data.dataset._target_) == ("cloth_sport", "translearn.data.sources.DisenCDRPair")
    assert [data.dataset[k] for k in ("domain_a", "domain_b", "folder_a", "folder_b")] == [
        "clothing", "sports", "cloth_sport", "sport_cloth"]
    assert list(data.source_domains) == ["clothing"] and data.target_domain == "sports"
    assert data.preprocess.sparsify.domain == "sports" and data.split._target_.endswith("LeaveOneOut")
    reverse = compose(["data=cloth_sport", "data.source_domains=[sports]", "data.target_domain=clothing"]).data
    assert reverse.preprocess.sparsify.domain == "clothing"


def test_disencdr_pair_takes_its_domain_names_from_the_config(tmp_path: Path) -> None:
    from translearn.build import build_data
    from translearn.cli.config import compose

    keys = PAIR_KEYS | {"root": str(disencdr(tmp_path))}
    data = compose(["data=disencdr_pair", *(f"data.dataset.{k}={v}" for k, v in keys.items())]).data
    assert list(data.source_domains) == ["music"] and data.target_domain == "books"
    prepared = build_data(data, cache_dir=None)
    assert prepared.target == "books" and prepared.sources == ("music",)
    assert prepared.data.domain_names == ["music", "books"]


@pytest.mark.parametrize("missing", list(PAIR_KEYS))
def test_disencdr_pair_names_a_required_key_left_unset(tmp_path: Path, missing: str) -> None:
    from omegaconf.errors import MissingMandatoryValue

    from translearn.build import build_data
    from translearn.cli.config import compose

    keys = PAIR_KEYS | {"root": str(disencdr(tmp_path))}
    data = compose(["data=disencdr_pair", *(f"data.dataset.{k}={v}" for k, v in keys.items() if k != missing)]).data
    with pytest.raises(MissingMandatoryValue, match=rf"Missing mandatory value: data\.dataset\.{missing}"):
        build_data(data, cache_dir=None)
