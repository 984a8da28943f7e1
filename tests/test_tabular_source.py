"""TabularSource: the user's own CSV/TSV/Parquet tables, with or without a header line."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from test_sources import rows, write

from translearn.data.errors import DataError
from translearn.data.sources import TabularSource

# ---------------------------------------------------------------- user tables (CSV / TSV / Parquet)

ALL = ("user,item,stars,when,domain\n"
       "alice,b1,5,2024-01-01T00:00:00Z,books\n"
       "bob,m1,3,2024-01-02,movies\n"
       "alice,m2,4,2024-01-01 00:01:00,movies\n"
       ",b2,2,2024-01-03,books\n"
       "carol,,1,2024-01-04,music\n")


def table(**kw: object) -> dict:
    columns = {"user_column": "user", "item_column": "item", "rating_column": "stars", "order_column": "when"}
    return columns | kw


def test_tabular_one_file_with_domain_column(tmp_path: Path) -> None:
    src = TabularSource(files={"all": write(tmp_path / "all.csv", ALL)}, domain_column="domain", **table())
    data = src.load()
    assert data.domain_names == ["books", "movies", "music"]
    assert data.user_ids.tolist() == ["alice", "bob", "carol"]
    assert rows(data, "books", True) == [("alice", "b1", 1704067200.0), (None, "b2", 1704240000.0)]
    assert rows(data, "movies", True) == [("alice", "m2", 1704067260.0), ("bob", "m1", 1704153600.0)]
    assert rows(data, "music") == [("carol", None)]  # missing ids pass through as MISSING
    assert data.domain("movies").interactions.ratings.tolist() == [3.0, 4.0]
    assert data.domain("books").item_ids.tolist() == ["b1", "b2"]


def test_tabular_domain_filter_and_item_file(tmp_path: Path) -> None:
    items = write(tmp_path / "movie_items.tsv", "iid\ttitle\tgenre\nm1\tAlien\tsci-fi horror\nm3\tUp\t\n")
    src = TabularSource(files={"all": write(tmp_path / "all.csv", ALL)}, domain_column="domain",
                        domains=["movies", "books"], item_files={"movies": items, "music": items},
                        item_id_column="iid", text_column="title", attributes_column="genre", **table())
    data = src.load()
    assert data.domain_names == ["movies", "books"]
    movies = data.domain("movies")
    assert movies.item_ids.tolist() == ["m1", "m2", "m3"]
    assert movies.item_text.tolist() == ["Alien", "", "Up"]
    assert movies.item_attributes.tolist() == ["sci-fi horror", "", ""]
    assert data.domain("books").item_text is None


def test_tabular_file_per_domain_and_parquet_round_trip(tmp_path: Path) -> None:
    books = pd.DataFrame({"user_id": [3, 1, 2], "item_id": [10, 11, 10], "ts": [5.0, 6.0, 7.0]})
    movies = pd.DataFrame({"user_id": [1, 4], "item_id": [20, 21], "ts": [1.0, 2.0]})
    books.to_csv(tmp_path / "books.csv", index=False)
    movies.to_csv(tmp_path / "movies.tsv", index=False, sep="\t")
    books.to_parquet(tmp_path / "books.parquet")
    movies.to_parquet(tmp_path / "movies.parquet")
    text = TabularSource({"books": tmp_path / "books.csv", "movies": tmp_path / "movies.tsv"},
                         order_column="ts").load()
    parquet = TabularSource({"books": tmp_path / "books.parquet", "movies": tmp_path / "movies.parquet"},
                            order_column="ts").load()
    for data in (text, parquet):
        assert data.user_ids.tolist() == [1, 2, 3, 4]
        assert rows(data, "books", True) == [(1, 11, 6.0), (2, 10, 7.0), (3, 10, 5.0)]
        assert rows(data, "movies", True) == [(1, 20, 1.0), (4, 21, 2.0)]
    assert text.stats() == parquet.stats()


def test_tabular_parquet_datetimes_and_string_ids(tmp_path: Path) -> None:
    df = pd.DataFrame({"user_id": ["u1", "u2"], "item_id": ["x", None],
                       "t": pd.to_datetime(["1970-01-01 00:00:10", "1970-01-02 00:00:00"])})
    df.to_parquet(tmp_path / "d.parquet")
    data = TabularSource(files={"d": tmp_path / "d.parquet"}, order_column="t").load()
    assert rows(data, "d", True) == [("u1", "x", 10.0), ("u2", None, 86400.0)]


def test_tabular_fingerprint(tmp_path: Path) -> None:
    files = {"all": write(tmp_path / "all.csv", ALL)}
    a = TabularSource(files=files, domain_column="domain", **table()).fingerprint()
    assert a == TabularSource(files=files, domain_column="domain", **table()).fingerprint()
    assert a != TabularSource(files=files, domain_column="domain", domains=["books"], **table()).fingerprint()
    assert a != TabularSource(files=files, domain_column="domain", **table(rating_column=None)).fingerprint()


@pytest.mark.parametrize(("text", "kw", "where", "words"), [
    (ALL, {"domains": ["films"]}, "all.csv, column 'domain'", "films; the data has: books, movies, music"),
    (ALL, {"user_column": "uid"}, "all.csv, column 'uid'", "the file has columns: user, item, stars, when"),
    (ALL.replace(",3,", ",three,"), {}, "all.csv, line 3, column 'stars'", "'three'"),
    (ALL.replace("2024-01-03", "yesterday"), {}, "all.csv, line 5, column 'when'", "'yesterday'"),
    (ALL + "\n\ndave,m1,4,2024-01-05,movies,extra\n", {}, "all.csv, line 9", "expected 5 fields, saw 6"),
    (ALL.replace("\nbob", "\n\nbob").replace(",3,", ",x,"), {}, "all.csv, line 4, column 'stars'", "'x'"),
    (ALL.replace(",music", ","), {}, "all.csv, line 6, column 'domain'", "domain name"),
])
def test_tabular_errors(tmp_path: Path, text: str, kw: dict, where: str, words: str) -> None:
    src = TabularSource({"all": write(tmp_path / "all.csv", text)}, domain_column="domain", **table(**kw))
    with pytest.raises(DataError) as err:
        src.load()
    assert where in str(err.value) and words in str(err.value)


def test_tabular_file_and_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.csv: file not found"):
        TabularSource(files={"x": tmp_path / "nope.csv"}).load()
    with pytest.raises(DataError, match=r"nope\.csv: file not found"):
        TabularSource(files={"x": tmp_path / "nope.csv"}).fingerprint()
    with pytest.raises(DataError, match="pass domain_column="):
        TabularSource(files={"all": write(tmp_path / "all.csv", ALL)}, **table()).load()
    with pytest.raises(DataError, match=r"set it with \+data\.dataset\.sep="):
        TabularSource(files={"x": write(tmp_path / "x.dat", "user_id;item_id\n1;2\n")}).load()
    data = TabularSource(files={"x": tmp_path / "x.dat"}, sep=";").load()
    assert rows(data, "x") == [(1, 2)]
    with pytest.raises(DataError, match=r"item file for unknown domain 'y'.*the data has: x"):
        TabularSource(files={"x": tmp_path / "x.dat"}, sep=";", item_files={"y": tmp_path / "x.dat"}).load()
    with pytest.raises(DataError, match=r"bad\.parquet: cannot read Parquet"):
        TabularSource(files={"x": write(tmp_path / "bad.parquet", "not parquet")}).load()


# a MovieLens-style ratings file with no header line: user, item, rating, timestamp
HEADERLESS = "1\t1630\t4\t881250949\n1\t17\t3\t881250950\n2\t1630\t5\t881250951\n"
NAMES = ["user_id", "item_id", "rating", "timestamp"]


def test_tabular_reads_a_headerless_file_with_names(tmp_path: Path) -> None:
    src = TabularSource(files={"m": write(tmp_path / "r.tsv", HEADERLESS)}, header=False, names=NAMES,
                        rating_column="rating", order_column="timestamp")
    data = src.load()
    assert sorted(rows(data, "m", with_order=True)) == [(1, 17, 881250950.0), (1, 1630, 881250949.0),
                                                         (2, 1630, 881250951.0)]
    assert sorted(data.domain("m").interactions.ratings.tolist()) == [3.0, 4.0, 5.0]  # the first line is data
    assert src.fingerprint() != TabularSource(files={"m": tmp_path / "r.tsv"}, header=False,
                                              names=["user_id", "item_id", "stars", "t"]).fingerprint()


def test_tabular_sep_tab_spelled_out(tmp_path: Path) -> None:
    path = write(tmp_path / "u.data", HEADERLESS)
    for sep in ("tab", "\\t"):
        src = TabularSource(files={"m": path}, sep=sep, header=False, names=NAMES)
        assert src.sep == "\t" and len(src.load().domain("m").interactions) == 3


def test_tabular_headerless_file_without_the_option_names_it(tmp_path: Path) -> None:
    src = TabularSource(files={"m": write(tmp_path / "r.tsv", HEADERLESS)})
    with pytest.raises(DataError) as err:
        src.load()
    msg = str(err.value)
    assert "r.tsv, column 'user_id': column 'user_id' not found; the file has columns: 1, 1630, 4, 881250949" in msg
    assert "data.dataset.header=false" in msg and "data.dataset.names=" in msg
    # a real header without the column is a plain "not found", with no hint about header lines
    with pytest.raises(DataError) as err:
        TabularSource(files={"m": write(tmp_path / "h.tsv", "u\ti\n1\t2\n")}).load()
    assert "data.dataset.header" not in str(err.value)


def test_tabular_header_and_names_must_agree(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="data.dataset.names must list the column names"):
        TabularSource(files={"m": tmp_path / "r.tsv"}, header=False)
    with pytest.raises(ValueError, match="data.dataset.names is only read when data.dataset.header is false"):
        TabularSource(files={"m": tmp_path / "r.tsv"}, names=NAMES)
