"""Whether a logged metric is better high or low, from its name (for checkpoints, early stopping, sweeps)."""

from __future__ import annotations

LOWER_IS_BETTER = frozenset({"rmse", "mae", "mse"})
HIGHER_IS_BETTER = frozenset({"hr", "recall", "precision", "ndcg", "mrr", "auc"})


def metric_mode(name: str) -> str:
    """``"min"`` or ``"max"`` for a logged key such as ``val/target/rmse`` or ``val/target/ndcg@10``.

    Loss terms (``train/loss``, ``train/loss_t``, ...) are minimised; an unknown metric is an error, as
    guessing the direction would silently select the worst epoch.
    """
    base = str(name).rsplit("/", 1)[-1].split("@", 1)[0].lower()
    if base in LOWER_IS_BETTER or base.startswith("loss"):
        return "min"
    if base in HIGHER_IS_BETTER:
        return "max"
    known = ", ".join(sorted(LOWER_IS_BETTER | HIGHER_IS_BETTER))
    raise ValueError(f"config key 'monitor': cannot tell whether {name!r} is better high or low (known metrics: "
                     f"{known}, loss*); set callbacks.model_checkpoint.mode and callbacks.early_stopping.mode")
