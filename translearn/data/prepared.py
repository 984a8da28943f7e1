"""``PreparedData``: preprocessed data plus the split's roles for every domain, and its on-disk (cache) format."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from translearn.data.schema import MISSING, CrossDomainData, Domain, Interactions
from translearn.data.splits import ROLE_NAMES, TEST, TRAIN, VALID

_ROLE = {"train": TRAIN, "valid": VALID, "test": TEST}
ARRAYS_DIR = "arrays"


def _file_name(name: str) -> str:
    """An array's file name in ``arrays/``: its name with ``/`` as ``.``, and ``%`` and ``.`` escaped so that
    two names never share a file (the manifest lists the names)."""
    return name.replace("%", "%25").replace(".", "%2E").replace("/", ".")


@dataclass(frozen=True)
class PreparedData:
    """Everything training and evaluation read.

    domain_roles:   {domain: int8 [N_domain]} TRAIN / VALID / TEST per interaction of every domain (the one
                    representation of the split; ``roles`` is the target's). Given as a single int8
                    [N_target] array it is the target's roles, and every other domain's rows are TRAIN.
    eval_negatives: {"valid": int64 [n_valid_rows, K], "test": ...} for the sampled protocol, row-aligned
                    with ``held_out(role)``; empty under full ranking
    ties:           the split's tie rule for equal order keys (``splits.TIES``): histories follow it too
    split_key:      the cache key without the evaluation protocol: equal split keys mean the same rows in the
                    same train/valid/test roles (set by ``prepare``; a protocol override keeps it)
    """

    data: CrossDomainData
    target: str
    sources: tuple[str, ...]
    domain_roles: Mapping[str, np.ndarray] | np.ndarray
    eval_negatives: dict[str, np.ndarray] = field(default_factory=dict)
    report: tuple[str, ...] = ()
    key: str = ""
    split_name: str = ""
    ties: str = "file_order"
    split_key: str = ""

    def __post_init__(self) -> None:
        given = self.domain_roles
        if not isinstance(given, Mapping):
            given = {self.target: given}
        roles = {}
        for name, dom in self.data.domains.items():
            n = len(dom.interactions)
            r = np.asarray(given[name], dtype=np.int8) if name in given else np.full(n, TRAIN, dtype=np.int8)
            if r.shape != (n,) or not np.isin(r, (TRAIN, VALID, TEST)).all():
                raise ValueError(f"roles of domain {name!r} must be {n} values in train/valid/test (0, 1, 2)")
            roles[name] = r
        if set(given) - set(roles):
            raise ValueError(f"roles given for domains the data lacks: {sorted(set(given) - set(roles))}")
        object.__setattr__(self, "domain_roles", roles)

    @property
    def roles(self) -> np.ndarray:
        """int8 [N_target] the target's roles."""
        return self.domain_roles[self.target]

    def role_of(self, domain: str) -> np.ndarray:
        """int8 [N_domain] the roles of ``domain``'s interactions."""
        self.data.domain(domain)  # a clear error for an unknown domain
        return self.domain_roles[domain]

    @property
    def num_users(self) -> int:
        return self.data.num_users

    def num_items(self, domain: str) -> int:
        return self.data.domain(domain).num_items

    @property
    def domains(self) -> list[str]:
        return [*self.sources, self.target]

    def train(self, domain: str) -> Interactions:
        """The TRAIN rows of ``domain`` (every row of a source under the target-only splits)."""
        inter = self.data.domain(domain).interactions
        train = self.role_of(domain) == TRAIN
        return inter if train.all() else inter.take(train)

    def users_with_training_data(self, domains: list[str]) -> np.ndarray:
        """[num_users] bool: whether a user has training rows in any of ``domains``."""
        seen = np.zeros(self.num_users, dtype=bool)
        for domain in domains:
            seen[self.train(domain).users] = True
        return seen

    def held_out(self, role: str, domain: str | None = None) -> Interactions:
        """Interactions of ``domain`` (default: the target) with role ``valid`` or ``test``."""
        if role not in ("valid", "test"):
            raise ValueError(f"role must be 'valid' or 'test', got {role!r}")
        domain = self.target if domain is None else domain
        return self.data.domain(domain).interactions.take(self.role_of(domain) == _ROLE[role])

    def overlap(self, source: str) -> np.ndarray:
        """Sorted users with training rows in ``source`` and any row in the target."""
        users = self.train(source).users
        trained = np.unique(users[users != MISSING])
        return np.intersect1d(trained, self.data.users_in(self.target), assume_unique=True)

    def stats(self) -> dict:
        out = self.data.stats()
        out["target"] = self.target
        out["sources"] = list(self.sources)
        out["split"] = {ROLE_NAMES[r]: int((self.roles == r).sum()) for r in (TRAIN, VALID, TEST)}
        held = self.data.domain(self.target).interactions.users[self.roles != TRAIN]
        out["split"]["eval_users"] = int(len(np.unique(held)))
        for name in self.sources:  # a source's own held-out rows, when a split gives it some
            r = self.domain_roles[name]
            if (r != TRAIN).any():
                out.setdefault("source_split", {})[name] = {ROLE_NAMES[k]: int((r == k).sum()) for k in ROLE_NAMES}
        if self.eval_negatives:
            out["split"]["sampled_negatives"] = int(next(iter(self.eval_negatives.values())).shape[1])
        return out

    def manifest(self) -> dict:
        return {"key": self.key, "target": self.target, "sources": list(self.sources),
                "split": self.split_name, "ties": self.ties, "stats": self.stats(), "report": list(self.report)}

    # ---- on-disk format -------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        """Every array of the prepared data by its name (what ``save`` writes, one ``.npy`` file each)."""
        arrays: dict[str, np.ndarray] = {"user_ids": self.data.user_ids}
        for name, dom in self.data.domains.items():
            inter = dom.interactions
            arrays[f"{name}/roles"] = self.domain_roles[name]
            arrays[f"{name}/users"] = inter.users
            arrays[f"{name}/items"] = inter.items
            arrays[f"{name}/item_ids"] = dom.item_ids
            for key, value in (("ratings", inter.ratings), ("order", inter.order)):
                if value is not None:
                    arrays[f"{name}/{key}"] = value
            for key, value in (("item_text", dom.item_text), ("item_attributes", dom.item_attributes),
                               ("image_paths", dom.image_paths)):
                if value is not None:
                    arrays[f"{name}/{key}/utf8"], arrays[f"{name}/{key}/offsets"] = _pack_strings(value)
        for role, neg in self.eval_negatives.items():
            arrays[f"negatives/{role}"] = neg
        return arrays

    def digest(self) -> str:
        """sha256 over every array's name, dtype, shape and bytes, and the report: equal digests, equal data."""
        h = hashlib.sha256()
        for name, arr in sorted(self.arrays().items()):
            arr = np.ascontiguousarray(arr)
            h.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
            h.update(arr.tobytes())
        h.update("\n".join(self.report).encode())
        return h.hexdigest()

    def save(self, folder: Path) -> None:
        """Write ``arrays/<name>.npy`` (one uncompressed file per array, ``/`` in a name as ``.``) and
        ``manifest.json`` into ``folder`` (an empty temp dir of the cache). ``load`` maps these files
        read-only, so the processes of one machine (DDP ranks, parallel jobs) share their pages."""
        arrays = folder / ARRAYS_DIR
        arrays.mkdir()
        every = self.arrays()
        for name, arr in every.items():
            np.save(arrays / f"{_file_name(name)}.npy", np.ascontiguousarray(arr), allow_pickle=False)
        meta = self.manifest() | {"domains": list(self.data.domains), "arrays": sorted(every)}
        (folder / "manifest.json").write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path, mmap: bool = True) -> PreparedData:
        """Read an entry written by ``save``: its arrays memory-mapped read-only (``mmap=False``: copied into
        this process), or from ``arrays.npz`` for an entry written before arrays had a file each."""
        meta = json.loads((folder / "manifest.json").read_text())
        if (folder / "arrays.npz").is_file():
            with np.load(folder / "arrays.npz", allow_pickle=False) as z:
                a = {k: z[k] for k in z.files}
        else:
            mode = "r" if mmap else None
            a = {name: np.load(folder / ARRAYS_DIR / f"{_file_name(name)}.npy", mmap_mode=mode, allow_pickle=False)
                 for name in meta["arrays"]}
        domains, roles = {}, {}
        for name in meta["domains"]:
            roles[name] = a[f"{name}/roles"]
            inter = Interactions(a[f"{name}/users"], a[f"{name}/items"], a.get(f"{name}/ratings"),
                                 a.get(f"{name}/order"))
            text, attrs, images = (_unpack_strings(a, f"{name}/{key}")
                                   for key in ("item_text", "item_attributes", "image_paths"))
            domains[name] = Domain(name, inter, a[f"{name}/item_ids"], text, attrs, images)
        negatives = {k.split("/", 1)[1]: v for k, v in a.items() if k.startswith("negatives/")}
        return cls(CrossDomainData(a["user_ids"], domains), meta["target"], tuple(meta["sources"]),
                   roles, negatives, tuple(meta["report"]), meta["key"], meta.get("split", ""),
                   meta.get("ties", "file_order"))

    def stage_view(self, domains: list[str], validate: str, seed: int = 0, hold_out: bool = True) -> PreparedData:
        """The data a source stage trains and validates on (see ``views.stage_view``)."""
        from translearn.data.views import stage_view

        return stage_view(self, domains, validate, seed, hold_out)


def _pack_strings(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Strings as one UTF-8 byte buffer [total] and end offsets [n] (no pickle, no fixed width)."""
    encoded = [str(v).encode() for v in values]
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), np.cumsum([len(e) for e in encoded], dtype=np.int64)


def _unpack_strings(arrays: dict[str, np.ndarray], key: str) -> np.ndarray | None:
    if f"{key}/utf8" not in arrays:
        return None
    buf, ends = arrays[f"{key}/utf8"].tobytes(), arrays[f"{key}/offsets"]
    starts = np.concatenate([[0], ends])[:-1]  # also right for zero strings (a domain left with no items)
    out = np.empty(len(ends), dtype=object)
    out[:] = [buf[s:e].decode() for s, e in zip(starts, ends, strict=True)]
    return out
