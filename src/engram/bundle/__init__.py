"""Cube bundles: one owner's memories in every tier (text rows with their histories,
retention and feedback; KV blocks; LoRA adapter versions) as a checksummed directory or
tar, to move between homes and backends (docs/bundles.md)."""

from engram.bundle.errors import BundleConflictError, BundleError, BundleFormatError
from engram.bundle.manifest import BundleReport

__all__ = ["BundleConflictError", "BundleError", "BundleFormatError", "BundleReport"]
