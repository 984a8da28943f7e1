"""Item towers and sequence token tables built from frozen content features and a shared adaptor.

``ContentItemTower`` (MF, NCF): one domain's items, ``forward(items [...]) -> [..., D]``, ``all() -> [n, D]``.
``ContentTokenTable`` (SASRec, GRU4Rec): every history domain's items as one token table, with the
interface of the ``nn.Embedding`` it replaces: ``__call__(tokens [...]) -> [..., D]``, ``.weight``
[num_tokens, D] (row 0, padding, is zero), ``embedding_dim``, ``num_embeddings``; ``TiedItemTower`` and
the sequence encoders read it unchanged.

The features are non-persistent buffers: they stay out of checkpoints and ``state_dict`` (they are
recomputed from the feature cache when the model is built), so loading a checkpoint needs the same
catalogue, and fine-tuning (which copies parameters) never copies another domain's features. The
adaptor and the gate are held in plain lists, not registered here: the recommender registers them once
(``content_adaptor``, ``content_mix``), so they appear once in ``state_dict`` and are the same objects for
every domain.

The full table (``all()``, ``.weight``) is computed once and reused while its inputs are unchanged (no
optimiser step since, parameters not written, same grad mode and device): a training step reads it for the
input lookups and for the output scores from one computation, and evaluation computes it once for all batches.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from translearn.models.content import mix

_OPTIMISER_STEPS = [0]  # every optimiser step of this process, counted by the hook below


def _count_optimiser_step(optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
    _OPTIMISER_STEPS[0] += 1


# Any optimiser's step invalidates every cached table. The version counter alone is not enough: a fused
# Adam step (torch.optim.Adam(fused=True), our default) updates parameters without bumping it.
register_optimizer_step_post_hook(_count_optimiser_step)


class TableCache:
    """Holds one computed tensor while the tensors it is computed from are unchanged.

    The key is the number of optimiser steps taken in this process (a global step hook counts them), each
    input's storage and version counter (``load_state_dict`` and other in-place writes bump it), its
    ``requires_grad``, and the grad, inference and autocast modes. A cached value that carries a graph is
    dropped once a backward pass has gone through it, so a second step never reuses a freed graph.
    """

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._value: Tensor | None = None

    def clear(self) -> None:
        self._key, self._value = None, None

    def get(self, inputs: list[Tensor], compute: Callable[[], Tensor]) -> Tensor:
        key = (_OPTIMISER_STEPS[0], tuple((t.data_ptr(), t._version, t.requires_grad) for t in inputs),
               torch.is_grad_enabled(), torch.is_inference_mode_enabled(), torch.is_autocast_enabled())
        if self._value is not None and self._key == key:
            return self._value
        value = compute()
        if value.requires_grad:
            value.register_hook(self._dropped)
        self._key, self._value = key, value
        return value

    def _dropped(self, grad: Tensor) -> None:
        self.clear()

    def __deepcopy__(self, memo: dict) -> TableCache:
        return TableCache()  # a copy recomputes (a tensor with a graph cannot be deep-copied)

    def __getstate__(self) -> dict:
        return {"_key": None, "_value": None}


class ContentItemTower(nn.Module):
    """One domain's item vectors ``mix(ids(i), adaptor(features[i]))`` (see ``translearn.models.content``).

    features: float32 [n, F] frozen; adaptor: [..., F] -> [..., D] (shared, registered by the recommender);
    embedding: an ``IdEmbedding(n, D)`` for ``id_text`` (registered here), else None; gate: ``IdTextGate``
    (shared) or None for a sum.
    """

    def __init__(self, features: Tensor, adaptor: nn.Module, embedding: nn.Module | None = None,
                 gate: nn.Module | None = None) -> None:
        super().__init__()
        self.register_buffer("features", features.detach().float().clone(), persistent=False)
        self._shared = [adaptor, gate]  # plain list: registered (and saved) once, by the recommender
        self.embedding = embedding
        self.dim = adaptor.out_dim
        self._cache = TableCache()

    @property
    def num(self) -> int:
        return self.features.shape[0]

    def _vectors(self, items: Tensor | None) -> Tensor:
        adaptor, gate = self._shared
        feats = self.features if items is None else self.features[items]
        ids = None if self.embedding is None else (self.embedding.all() if items is None else self.embedding(items))
        return mix(gate, ids, adaptor(feats))

    def forward(self, items: Tensor) -> Tensor:
        return self._vectors(items)

    def all(self) -> Tensor:
        return self._cache.get(_inputs(self), lambda: self._vectors(None))


class ContentTokenTable(nn.Module):
    """A token table [1 + sum n_d, D] from content: row 0 is padding (zeros), row t is
    ``mix(ids[t], adaptor(features[t - 1]))``.

    features: float32 [num_tokens - 1, F], the history domains' items in token order; adaptor and gate
    shared as for ``ContentItemTower``; embedding: the encoder's own ``nn.Embedding(num_tokens, D,
    padding_idx=0)`` for ``id_text`` (registered here, so its encoder initialisation is kept), else None.
    """

    def __init__(self, features: Tensor, adaptor: nn.Module, embedding: nn.Embedding | None = None,
                 gate: nn.Module | None = None) -> None:
        super().__init__()
        if embedding is not None and embedding.num_embeddings != features.shape[0] + 1:
            raise ValueError(f"id table has {embedding.num_embeddings} rows, the features {features.shape[0]} + 1")
        self.register_buffer("features", features.detach().float().clone(), persistent=False)
        self._shared = [adaptor, gate]
        self.embedding = embedding
        self.embedding_dim = adaptor.out_dim
        self.num_embeddings = features.shape[0] + 1
        self._cache = TableCache()

    def _table(self) -> Tensor:
        adaptor, gate = self._shared
        ids = None if self.embedding is None else self.embedding.weight[1:]
        rows = mix(gate, ids, adaptor(self.features))  # [T - 1, D]
        return torch.cat([rows.new_zeros(1, rows.shape[1]), rows])

    @property
    def weight(self) -> Tensor:
        """[num_tokens, D], computed once while the parameters are unchanged."""
        return self._cache.get(_inputs(self), self._table)

    def forward(self, tokens: Tensor) -> Tensor:
        return F.embedding(tokens, self.weight)

    def release(self) -> None:
        """Drop the cached table (after a training step)."""
        self._cache.clear()


def _inputs(module: nn.Module) -> list[Tensor]:
    """Every tensor a tower's table depends on: its buffers and parameters and the shared modules'."""
    shared = [m for m in module._shared if m is not None]
    tensors = [*module.buffers(), *module.parameters()]
    for m in shared:
        tensors += [*m.parameters()]
    return tensors
