"""``PreparedData``: preprocessed data plus the target split, and its on-disk (cache) format."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from translearn.data.schema import CrossDomainData, Domain, Interactions
from translearn.data.splits import ROLE_NAMES, TEST, TRAIN, VALID

_ROLE = {"train": TRAIN, "valid": VALID, "test": TEST}


@dataclass(frozen=True)
class PreparedData:
    """Everything training and evaluation read.

    roles:          int8 [N_target] TRAIN / VALID / TEST per target interaction (sources are all train)
    eval_negatives: {"valid": int64 [n_valid_rows, K], "test": ...} for the sampled protocol, row-aligned
                    with ``held_out(role)``; empty under full ranking
    ties:           the split's tie rule for equal order keys (``splits.TIES``): histories follow it too
    """

    data: CrossDomainData
    target: str
    sources: tuple[str, ...]
    roles: np.ndarray
    eval_negatives: dict[str, np.ndarray] = field(default_factory=dict)
    report: tuple[str, ...] = ()
    key: str = ""
    split_name: str = ""
    ties: str = "file_order"

    @property
    def num_users(self) -> int:
        return self.data.num_users

    def num_items(self, domain: str) -> int:
        return self.data.domain(domain).num_items

    @property
    def domains(self) -> list[str]:
        return [*self.sources, self.target]

    def train(self, domain: str) -> Interactions:
        """Training interactions of ``domain``: all of a source, the TRAIN rows of the target."""
        inter = self.data.domain(domain).interactions
        return inter.take(self.roles == TRAIN) if domain == self.target else inter

    def users_with_training_data(self, domains: list[str]) -> np.ndarray:
        """[num_users] bool: whether a user has training rows in any of ``domains``."""
        seen = np.zeros(self.num_users, dtype=bool)
        for domain in domains:
            seen[self.train(domain).users] = True
        return seen

    def held_out(self, role: str) -> Interactions:
        """Target interactions with role ``valid`` or ``test``."""
        if role not in ("valid", "test"):
            raise ValueError(f"role must be 'valid' or 'test', got {role!r}")
        return self.data.domain(self.target).interactions.take(self.roles == _ROLE[role])

    def overlap(self, source: str) -> np.ndarray:
        """Users with training data in ``source`` and any data in the target."""
        return self.data.overlapping_users(source, self.target)

    def stats(self) -> dict:
        out = self.data.stats()
        out["target"] = self.target
        out["sources"] = list(self.sources)
        out["split"] = {ROLE_NAMES[r]: int((self.roles == r).sum()) for r in (TRAIN, VALID, TEST)}
        held = self.data.domain(self.target).interactions.users[self.roles != TRAIN]
        out["split"]["eval_users"] = int(len(np.unique(held)))
        if self.eval_negatives:
            out["split"]["sampled_negatives"] = int(next(iter(self.eval_negatives.values())).shape[1])
        return out

    def manifest(self) -> dict:
        return {"key": self.key, "target": self.target, "sources": list(self.sources),
                "split": self.split_name, "ties": self.ties, "stats": self.stats(), "report": list(self.report)}

    # ---- on-disk format -------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        """Every array of the prepared data by its name in ``arrays.npz`` (what ``save`` writes)."""
        arrays: dict[str, np.ndarray] = {"user_ids": self.data.user_ids, "roles": self.roles}
        for name, dom in self.data.domains.items():
            inter = dom.interactions
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
        """Write ``arrays.npz`` and ``manifest.json`` into ``folder`` (an empty temp dir of the cache)."""
        np.savez(folder / "arrays.npz", **self.arrays())
        meta = self.manifest() | {"domains": list(self.data.domains)}
        (folder / "manifest.json").write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> PreparedData:
        meta = json.loads((folder / "manifest.json").read_text())
        with np.load(folder / "arrays.npz", allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
        domains = {}
        for name in meta["domains"]:
            inter = Interactions(a[f"{name}/users"], a[f"{name}/items"], a.get(f"{name}/ratings"),
                                 a.get(f"{name}/order"))
            text, attrs, images = (_unpack_strings(a, f"{name}/{key}")
                                   for key in ("item_text", "item_attributes", "image_paths"))
            domains[name] = Domain(name, inter, a[f"{name}/item_ids"], text, attrs, images)
        negatives = {k.split("/", 1)[1]: v for k, v in a.items() if k.startswith("negatives/")}
        return cls(CrossDomainData(a["user_ids"], domains), meta["target"], tuple(meta["sources"]),
                   a["roles"], negatives, tuple(meta["report"]), meta["key"], meta.get("split", ""),
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
