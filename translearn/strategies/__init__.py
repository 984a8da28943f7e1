"""Transfer strategies: LightningModules that differ only in ``compute_loss`` (and what they score with)."""

from translearn.strategies.base import TransferStrategy
from translearn.strategies.joint import Joint
from translearn.strategies.target_only import TargetOnly

__all__ = ["Joint", "TargetOnly", "TransferStrategy"]
