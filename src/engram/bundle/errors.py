"""Why a cube bundle is refused. Every one is a ValidationError: nothing was written."""

from __future__ import annotations

from engram.errors import ValidationError


class BundleError(ValidationError):
    """A cube bundle cannot be read or trusted (missing, tampered or extra file, a path
    escaping the bundle, a bad manifest); nothing was imported."""

    code = "bundle_invalid"


class BundleFormatError(BundleError):
    """The bundle was written in a newer format than this Engram reads."""

    code = "bundle_too_new"


class BundleConflictError(BundleError):
    """The target holds the bundle's owner (or one of its artifacts) with other data; an
    owner is never overwritten or mixed."""

    code = "bundle_conflict"
