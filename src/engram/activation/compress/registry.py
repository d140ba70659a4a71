"""The one registry of KV compression methods, read by config, CLI and benchmark alike."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, TypeVar

from engram.errors import ValidationError

if TYPE_CHECKING:
    from engram.activation.compress.base import Compressor

C = TypeVar("C", bound="type[Compressor]")

COMPRESSORS: dict[str, type[Compressor]] = {}


def register_compressor(cls: C) -> C:
    COMPRESSORS[cls.name] = cls
    return cls


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_method(spec: str) -> Compressor | None:
    """'snapkv:keep=0.25,window=16+kivi:bits=2' -> KIVI(bits=2, inner=SnapKV(...)).

    Steps run left to right; each wraps the one before it. '' or 'none' is no compression.
    """
    spec = spec.strip()
    if spec in {"", "none"}:
        return None
    method: Compressor | None = None
    for step in spec.split("+"):
        name, _, args = step.strip().partition(":")
        if name not in COMPRESSORS:
            known = ", ".join(sorted(COMPRESSORS))
            raise ValidationError(f"unknown KV compression method {name!r} (known: {known})")
        params: dict[str, Any] = {}
        for pair in filter(None, (a.strip() for a in args.split(","))):
            key, sep, value = pair.partition("=")
            if not sep:
                raise ValidationError(f"{name}: expected key=value, got {pair!r}")
            params[key] = _value(value)
        try:
            method = COMPRESSORS[name](**params, inner=method)
        except TypeError as err:
            raise ValidationError(f"{name}: {err}") from err
    return method


def method_from_spec(steps: list[dict[str, Any]]) -> Compressor | None:
    """The inverse of `Compressor.spec()` (what a manifest records)."""
    method: Compressor | None = None
    for step in steps:
        params = {k: v for k, v in step.items() if k != "name"}
        method = COMPRESSORS[step["name"]](**params, inner=method)
    return method


def describe(method: Compressor | None) -> str:
    """The spec string `parse_method` reads back."""
    if method is None:
        return "none"
    parts = []
    for step in method.spec():
        args = ",".join(f"{k}={json.dumps(v)}" for k, v in step.items() if k != "name")
        parts.append(f"{step['name']}:{args}" if args else step["name"])
    return "+".join(parts)
