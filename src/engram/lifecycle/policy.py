"""Which retention rules apply to an owner's memories of one type: the configured
policies (`retention.policies`), overridden field by field by the owner's own (stored
with the cube, set by `Memory.set_retention_policy`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from engram.config import RetentionPolicy
from engram.errors import ValidationError

ALL_TYPES = "*"


def check_policy(fields: dict[str, Any]) -> dict[str, Any]:
    """Validate policy fields; returns only those given (None clears an inherited one)."""
    try:
        policy = RetentionPolicy.model_validate(fields)
    except PydanticValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'policy'}: {e['msg']}" for e in err.errors()
        )
        raise ValidationError(f"invalid retention policy: {problems}") from err
    return policy.model_dump(exclude_unset=True)


@dataclass(frozen=True)
class OwnerPolicies:
    """The policy layers of one owner, lowest first: config '*', config type, owner '*',
    owner type. A capacity budget is not inherited from '*': there it is the owner's total."""

    configured: dict[str, RetentionPolicy] = field(default_factory=dict)
    owner: dict[str, dict[str, Any]] = field(default_factory=dict)

    def _layers(self, memory_type: str) -> list[dict[str, Any]]:
        layers = []
        for name in (ALL_TYPES, memory_type):
            found = self.configured.get(name)
            layers.append({} if found is None else found.model_dump(exclude_unset=True))
        layers += [self.owner.get(ALL_TYPES, {}), self.owner.get(memory_type, {})]
        return layers

    def for_type(self, memory_type: str) -> RetentionPolicy:
        """The effective rules for one type (its `max_active` is the type's own budget)."""
        merged: dict[str, Any] = {}
        for i, layer in enumerate(self._layers(memory_type)):
            inherited = i in (0, 2) and memory_type != ALL_TYPES
            merged.update({k: v for k, v in layer.items() if not (inherited and k == "max_active")})
        return RetentionPolicy(**merged)

    def total(self) -> RetentionPolicy:
        """The owner-wide rules ('*')."""
        return self.for_type(ALL_TYPES)

    def types(self) -> set[str]:
        """Memory types named by any layer ('*' excluded)."""
        return ({*self.configured} | {*self.owner}) - {ALL_TYPES}
