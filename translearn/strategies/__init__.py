"""Transfer strategies: LightningModules that differ only in ``compute_loss`` (and what they score with).

``from translearn.strategies import Distillation`` etc.; see docs/strategies.md for the formulas.
"""

from translearn.strategies.base import TransferStrategy
from translearn.strategies.distill import Distillation
from translearn.strategies.feature_reuse import FeatureReuse
from translearn.strategies.finetune import FineTune
from translearn.strategies.fusion import Fusion
from translearn.strategies.joint import Joint
from translearn.strategies.mapping import Mapping
from translearn.strategies.popularity import Popularity
from translearn.strategies.ptupcdr import PTUPCDR
from translearn.strategies.source_only import SourceOnly
from translearn.strategies.target_only import TargetOnly

__all__ = ["Distillation", "FeatureReuse", "FineTune", "Fusion", "Joint", "Mapping", "PTUPCDR", "Popularity",
           "SourceOnly", "TargetOnly", "TransferStrategy"]
