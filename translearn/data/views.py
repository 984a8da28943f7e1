"""``stage_view``: the data a source stage trains on, with a validation slice of its own for early stopping.

A stage model (the start of fine-tuning, a distillation teacher, ...) is selected like any model: by
validation, with early stopping. Its validation rows must come from its own training data, never from
the target's held-out rows, and the main run's data must stay whole. The view is a new ``PreparedData``:

- it keeps only the stage's domains, and of each only its TRAIN rows (``PreparedData.train``: the real
  target's valid and test rows, and a source's own held-out rows if a split gives it some, are physically
  absent, so no history, label or negative sees them; rows a split dropped were never there);
- the ``validate`` domain becomes the view's target; per user with at least 2 rows there, the last row
  (by order key, ties by the split's rule; at random without an order key) is VALID, so every user keeps
  a training row. Every other row is TRAIN; the view has no TEST.

Training on the view trains on everything but the slice; evaluation ranks the slice's items against all
of the validated domain's items, masking the user's other (training) items.
"""

from __future__ import annotations

import numpy as np

from translearn.data.prepared import PreparedData
from translearn.data.schema import CrossDomainData
from translearn.data.splits import TRAIN, VALID, user_positions

MIN_ROWS = 2  # a user needs this many rows in the validated domain to give one (and keeps 1+ for training)


class EmptySliceError(ValueError):
    """No user has enough rows in the validated domain for a validation slice."""


def stage_view(prepared: PreparedData, domains: list[str], validate: str, seed: int = 0,
               hold_out: bool = True) -> PreparedData:
    """``prepared`` restricted to ``domains`` with a validation slice of ``validate`` (one of them); ``seed``
    orders rows at random when the domain has no order key. ``hold_out=False``: no slice (every row TRAIN,
    for a stage trained without validation)."""
    if validate not in domains:
        raise ValueError(f"the stage validates on {validate!r}, which is not among its domains {domains}")
    kept = {name: prepared.data.domain(name).with_interactions(prepared.train(name)) for name in domains}
    inter = kept[validate].interactions
    perm, pos, size = user_positions(inter, seed, prepared.ties)
    roles = np.full(len(inter), TRAIN, dtype=np.int8)
    if hold_out:
        roles[perm] = np.where((pos == size - 1) & (size >= MIN_ROWS), VALID, TRAIN)
    if hold_out and not (roles == VALID).any():
        raise EmptySliceError(f"the stage's validation slice of {validate!r} is empty: no user has {MIN_ROWS}+ "
                              "training rows there")
    data = CrossDomainData(prepared.data.user_ids, kept)
    sources = tuple(d for d in domains if d != validate)
    held = int((roles == VALID).sum())
    note = (f"stage view: {validate} holds out {held:,} training rows (each user's last of {MIN_ROWS}+) for the "
            "stage's validation") if hold_out else "stage view: no validation slice"
    report = (*prepared.report, note)
    return PreparedData(data, validate, sources, roles, {}, report, prepared.key + f"/stage:{validate}",
                        "StageSlice", prepared.ties)
