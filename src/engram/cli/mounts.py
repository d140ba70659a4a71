"""`engram mount`, `unmount` and `mounts`: cubes an owner reads beside its own (the
operation table's mount verbs, bound by engram.cli.bind; docs/compose.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from engram.cli.bind import command
from engram.cli.common import dump, emit, out, state
from engram.ops.table import MOUNT, MOUNTS, UNMOUNT

if TYPE_CHECKING:
    from engram.types import Mount


def _changed(word: str) -> Any:
    def render(mount: Mount, values: dict[str, Any]) -> None:
        if state.as_json:
            emit(dump(mount))
        else:
            out.print(f"{mount.owner} {word} {mount.cube}", highlight=False)

    return render


def _listed(mounts: list[Mount], values: dict[str, Any]) -> None:
    if state.as_json:
        emit([dump(m) for m in mounts])
        return
    for m in mounts:
        out.print(f"{m.cube}  (mounted {m.mounted_at:%Y-%m-%d %H:%M})", highlight=False)
    if not mounts:
        out.print("no mounts")


def register(app: typer.Typer) -> None:
    """Put `engram mount`, `unmount` and `mounts` on `app`."""
    for op, render in (
        (MOUNT, _changed("mounts")),
        (UNMOUNT, _changed("no longer mounts")),
        (MOUNTS, _listed),
    ):
        bound = command(op, render)
        app.command(op.command, short_help=getattr(bound, "short_help", None))(bound)
