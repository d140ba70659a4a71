"""The docs list every CLI command and option, every setting and every public name."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer.main
from pydantic import BaseModel

import engram
from engram.cli import app
from engram.config import EngramConfig

DOCS = Path(__file__).resolve().parent.parent / "docs"
README = DOCS.parent / "README.md"


def _commands(group: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(name, command) for every command and subcommand (typer vendors its own click)."""
    found = []
    for name, command in getattr(group, "commands", {}).items():
        found.append((f"{prefix}{name}", command))
        found += _commands(command, f"{prefix}{name} ")
    return found


CLICK_APP = typer.main.get_command(app)


@pytest.mark.parametrize("name, command", _commands(CLICK_APP), ids=lambda x: str(x))
def test_every_cli_command_and_option_is_documented(name: str, command: Any) -> None:
    text = (DOCS / "cli.md").read_text()
    assert re.search(rf"`engram {re.escape(name)}\b", text) or f"## {name}" in text, name
    for param in command.params:
        for opt in param.opts:
            if opt.startswith("-") and opt != "--help":
                assert opt in text, f"{name}: option {opt} is not in docs/cli.md"


def test_global_options_documented() -> None:
    text = (DOCS / "cli.md").read_text()
    for param in CLICK_APP.params:
        for opt in param.opts:
            if opt != "--help":
                assert f"`{opt}`" in text


def _settings(model: type[BaseModel], prefix: str = "") -> list[str]:
    names = []
    for field_name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names += _settings(annotation, f"{prefix}{field_name}.")
        else:
            names.append(f"{prefix}{field_name}")
    return names


@pytest.mark.parametrize("setting", _settings(EngramConfig))
def test_every_setting_is_documented(setting: str) -> None:
    assert f"`{setting}`" in (DOCS / "configuration.md").read_text()


@pytest.mark.parametrize("name", [n for n in engram.__all__ if n not in {"load_config"}])
def test_public_names_appear_in_api_doc(name: str) -> None:
    assert name in (DOCS / "api.md").read_text(), f"{name} is exported but not in docs/api.md"


def test_readme_commands_exist() -> None:
    text = README.read_text()
    assert "make demo" in text and "make test" in text
    makefile = (DOCS.parent / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    ci = (DOCS.parent / ".ci" / "run").read_text()
    assert "make test" in ci


def test_doc_links_resolve() -> None:
    for doc in [README, *DOCS.glob("*.md")]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if target.startswith("http"):
                continue
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"
