"""Fuse: merge one owner's cube into another's in the same home (docs/bundles.md#fuse)."""

from engram.fuse.apply import FuseReport
from engram.fuse.plan import FUSE_THRESHOLD, FuseAction

__all__ = ["FUSE_THRESHOLD", "FuseAction", "FuseReport"]
