"""``translearn-probe``: what item vectors know about an item attribute, as held-out linear-probe accuracy.

The label of an item is read from its ``attributes`` or ``text`` string: ``word=N`` takes the N-th word
(0-based) after splitting on whitespace, ``|`` and ``,``; ``regex=PATTERN`` takes the first group of the
first match (the whole match without a group). Items without a value (too few words, no match, empty
string) are left out; classes with fewer than ``min_count`` items are dropped (both reported). A
stratified split holds out ``test_fraction`` of every class; a multinomial logistic regression (softmax
over standardised vectors, L2 penalty, full-batch L-BFGS in torch) is fitted on the rest. Reported:
held-out accuracy, balanced accuracy (mean per-class recall), the majority-class baseline (always
predict the most frequent training class) and the number of classes. Id, text and transferred vectors of
the same items can then be compared on the same split (same ``seed``).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import numpy as np
import torch

from translearn.outputs.run import OutputError

FIELDS = ("attributes", "text")
_SPLIT = re.compile(r"[\s|,]+")


def attribute_labels(strings: np.ndarray, word: int | None = None, regex: str | None = None) -> np.ndarray:
    """object [n]: each string's label (``word`` or ``regex``, exactly one of them), None where it has none."""
    if (word is None) == (regex is None):
        raise OutputError("give exactly one of --word N and --regex PATTERN")
    if word is not None and word < 0:
        raise OutputError(f"--word must be >= 0 (0 is the first word), got {word}")
    pattern = None
    if regex is not None:
        try:
            pattern = re.compile(regex)
        except re.error as err:
            raise OutputError(f"--regex {regex!r} is not a valid regular expression: {err}") from None
    out = np.empty(len(strings), dtype=object)
    for i, s in enumerate(strings):
        text = "" if s is None else str(s)
        if pattern is None:
            words = [w for w in _SPLIT.split(text.strip()) if w]
            out[i] = words[word] if word < len(words) else None
        else:
            m = pattern.search(text)
            value = None if m is None else (m.group(1) if pattern.groups else m.group(0))
            out[i] = value if value else None
    return out


def _split(codes: np.ndarray, num_classes: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train, test) positions: per class, round(test_fraction * n) items (at least 1, and at
    least 1 left for training) go to test, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in range(num_classes):
        members = rng.permutation(np.flatnonzero(codes == c))
        n_test = min(max(1, round(test_fraction * len(members))), len(members) - 1)
        test.append(members[:n_test])
        train.append(members[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _softmax_regression(x: np.ndarray, y: np.ndarray, num_classes: int, l2: float, max_iter: int) -> torch.nn.Linear:
    """A linear layer [D -> C] fitted by L-BFGS on mean cross-entropy + l2/2 * ||W||^2 (zero start: the
    problem is convex, so the result does not depend on a seed)."""
    xt, yt = torch.from_numpy(x).double(), torch.from_numpy(y)
    layer = torch.nn.Linear(x.shape[1], num_classes).double()
    torch.nn.init.zeros_(layer.weight)
    torch.nn.init.zeros_(layer.bias)
    opt = torch.optim.LBFGS(layer.parameters(), lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(layer(xt), yt) + 0.5 * l2 * layer.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return layer


def fit_probe(vectors: np.ndarray, labels: np.ndarray, min_count: int = 10, test_fraction: float = 0.2,
              seed: int = 0, l2: float = 1e-3, max_iter: int = 200, name: str = "the attribute") -> dict[str, Any]:
    """Fit and score a linear probe of ``labels`` (object [n], None = no value) from ``vectors`` [n, D];
    ``name`` says in errors what the labels are."""
    if len(vectors) != len(labels):
        raise ValueError(f"{len(vectors)} vectors but {len(labels)} labels")
    if min_count < 2:
        raise OutputError(f"--min-count must be >= 2 (a class needs a training and a held-out item), got {min_count}")
    if not 0.0 < test_fraction < 1.0:
        raise OutputError(f"--test-fraction must be in (0, 1), got {test_fraction}")
    has = np.asarray([v is not None for v in labels], dtype=bool)
    counts = Counter(labels[has].tolist())
    kept = sorted((c for c, n in counts.items() if n >= min_count), key=lambda c: (-counts[c], c))
    dropped = {c: n for c, n in counts.items() if n < min_count}
    summary = {"items": int(len(labels)), "items_without_value": int((~has).sum()),
               "dropped_classes": len(dropped), "dropped_items": int(sum(dropped.values())), "min_count": min_count}
    if len(kept) < 2:
        if not counts:
            what = f"has no value for any of the {len(labels):,} items"
        elif len(counts) == 1:
            what = f"is constant: every item with a value has {next(iter(counts))!r}"
        else:
            what = f"has {len(kept)} class(es) with >= {min_count} items ({len(counts)} values in all)"
        raise OutputError(f"{name} {what}; a probe needs at least 2 classes (try another --word / --regex, "
                          "or a lower --min-count)")
    code_of = {c: k for k, c in enumerate(kept)}
    use = np.flatnonzero([v in code_of for v in labels])
    codes = np.asarray([code_of[labels[i]] for i in use], dtype=np.int64)
    x = np.asarray(vectors, dtype=np.float64)[use]
    train, test = _split(codes, len(kept), test_fraction, seed)
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)
    x = (x - mean) / np.where(std > 1e-12, std, 1.0)
    layer = _softmax_regression(x[train], codes[train], len(kept), l2, max_iter)
    with torch.no_grad():
        predicted = layer(torch.from_numpy(x[test])).argmax(dim=1).numpy()
        fitted = layer(torch.from_numpy(x[train])).argmax(dim=1).numpy()
    truth = codes[test]
    majority = int(np.bincount(codes[train], minlength=len(kept)).argmax())
    recalls = [float((predicted[truth == c] == c).mean()) for c in range(len(kept))]
    return {**summary, "classes": len(kept), "train_items": int(len(train)), "test_items": int(len(test)),
            "accuracy": float((predicted == truth).mean()), "balanced_accuracy": float(np.mean(recalls)),
            "majority_baseline": float((truth == majority).mean()), "majority_class": kept[majority],
            "train_accuracy": float((fitted == codes[train]).mean()), "chance": 1.0 / len(kept),
            "dim": int(x.shape[1]), "class_counts": {c: int(counts[c]) for c in kept}}


def item_strings(prepared: Any, domain: str, field: str) -> np.ndarray:
    """object [num_items]: the ``attributes`` or ``text`` string of every item of ``domain``."""
    if field not in FIELDS:
        raise OutputError(f"--attribute must be one of {', '.join(FIELDS)}, got {field!r}")
    dom = prepared.data.domain(domain)
    values = dom.item_attributes if field == "attributes" else dom.item_text
    if values is None:
        raise OutputError(f"--attribute {field}: domain {domain!r} has no item {field} in this data set")
    return values


def probe_vectors(vectors: np.ndarray, strings: np.ndarray, word: int | None = None, regex: str | None = None,
                  **fit: Any) -> dict[str, Any]:
    """``fit_probe`` on the labels ``attribute_labels(strings, word, regex)``."""
    fit.setdefault("name", f"--word {word}" if word is not None else f"--regex {regex!r}")
    return fit_probe(vectors, attribute_labels(strings, word, regex), **fit)
