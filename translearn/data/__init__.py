"""Data layer: plain Python/NumPy, no Lightning or Hydra (except ``datamodule``, imported on demand)."""

from translearn.data.build import RawDomain, build_cross_domain
from translearn.data.disjoint import DisjointUsers
from translearn.data.errors import DataError
from translearn.data.normalise import NormaliseRatings
from translearn.data.predefined import PredefinedSplit
from translearn.data.prepare import prepare
from translearn.data.prepared import PreparedData
from translearn.data.preprocess import (
    Deduplicate,
    DropInvalid,
    ImplicitFeedback,
    KCore,
    SparsifyDomain,
    StepReport,
)
from translearn.data.protocols import FullRanking, SampledNegatives
from translearn.data.schema import MISSING, CrossDomainData, Domain, Interactions
from translearn.data.splits import ColdStartUsers, LeaveOneOut, RatioSplit, SplitError, TemporalSplit, row_order

__all__ = [
    "MISSING", "ColdStartUsers", "CrossDomainData", "DataError", "Deduplicate", "DisjointUsers", "Domain",
    "DropInvalid", "FullRanking", "ImplicitFeedback", "Interactions", "KCore", "LeaveOneOut", "NormaliseRatings",
    "PredefinedSplit", "PreparedData", "RatioSplit", "RawDomain", "SampledNegatives", "SparsifyDomain", "SplitError",
    "StepReport", "TemporalSplit", "build_cross_domain", "prepare", "row_order",
]
