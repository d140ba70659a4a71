"""The operations of Engram, defined once and bound to every surface (see spec.py)."""

from engram.ops.spec import EVERYWHERE, REQUIRED, Operation, Param, Surface
from engram.ops.table import BY_NAME, OPERATIONS

__all__ = ["BY_NAME", "EVERYWHERE", "OPERATIONS", "REQUIRED", "Operation", "Param", "Surface"]
