"""`engram models pull|ls`: the model cache under $ENGRAM_HOME/models.

Only typer loads here; torch and transformers load when a pull converts a model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from engram.cli import common

models_app = typer.Typer(
    help="Models: pull and list those of the activation and parametric tiers; tune the embedder.",
    no_args_is_help=True,
)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _params(n: int | None) -> str:
    return "? parameters" if n is None else f"{n / 1e6:.1f}M parameters"


@models_app.command("pull")
def pull(
    name: Annotated[str, typer.Argument(help="Registered model name (see `engram models ls`).")],
) -> None:
    """Fetch, verify (sha256) and convert a registered model, once."""

    @common.reports_errors
    def run() -> None:
        from engram.models.cache import pull as pull_model

        home = common.load_settings().home
        quiet = common.state.as_json
        result = pull_model(name, home, log=_silent if quiet else _progress)
        if quiet:
            print(json.dumps(result))
            return
        manifest: dict[str, Any] = result["manifest"]
        where = common.shown(home / "models" / name)
        if not result["pulled"]:
            typer.echo(f"{name} is already pulled; nothing to do")
            typer.echo(f"  at {where}")
            return
        typer.echo(f"pulled {name} into {where}")
        typer.echo(f"  {_params(manifest['parameters'])}, {manifest['dtype']}")
        typer.echo(f"  from {manifest['source']}")
        typer.echo(f"  sha256 {manifest['sha256']}")

    run()


def _progress(message: str) -> None:
    typer.echo(message, err=True)


def _silent(_message: str) -> None:
    return None


@models_app.command("tune-embedder")
def tune_embedder(
    out: Annotated[Path, typer.Option("--out", help="The adapter file to write.")],
    seeds: Annotated[
        str, typer.Option("--seeds", help="Generator seeds to train on (seed 0 is scored).")
    ] = "1,2,3",
    conversations: Annotated[
        int, typer.Option("--conversations", min=1, help="Conversations per seed.")
    ] = 10,
    epochs: Annotated[int, typer.Option("--epochs", min=1)] = 1,
    rank: Annotated[int, typer.Option("--rank", min=1, help="LoRA rank.")] = 16,
    lr: Annotated[float, typer.Option("--lr", help="Learning rate.")] = 2e-4,
    steps: Annotated[
        int | None, typer.Option("--steps", min=1, help="Stop after this many steps.")
    ] = None,
) -> None:
    """Train an embedder adapter on generated conversations (docs/retrieval.md); select it
    with embedder.adapter = PATH."""

    @common.reports_errors
    def run() -> None:
        from engram.embed.tune import TuneSettings, tune

        settings = TuneSettings(
            seeds=common.int_list(seeds, "--seeds"),
            conversations=conversations,
            epochs=epochs,
            rank=rank,
            lr=lr,
            max_steps=steps,
        )
        result = tune(settings, out, log=_silent if common.state.as_json else _progress)
        if common.state.as_json:
            print(json.dumps(result))
            return
        typer.echo(f"wrote {common.shown(out)}: {result['weights']} weights adapted")
        typer.echo(
            f"  {result['pairs']} pairs, {result['steps']} steps, loss "
            f"{result['first_loss']} -> {result['last_loss']}, {result['seconds']} s"
        )
        typer.echo(f"  use it with: ENGRAM_EMBEDDER__ADAPTER={common.shown(out)}")

    run()


@models_app.command("ls")
def ls() -> None:
    """List the models under $ENGRAM_HOME/models, with their size on disk."""

    @common.reports_errors
    def run() -> None:
        from engram.models.cache import ls as list_models
        from engram.models.registry import MODELS

        found = list_models(common.load_settings().home)
        missing = sorted(set(MODELS) - {m["name"] for m in found})
        if common.state.as_json:
            print(json.dumps({"models": found, "not_pulled": missing}))
            return
        if not found:
            typer.echo("no models pulled yet")
        for model in found:
            size = _mb(model["bytes"])
            typer.echo(f"{model['name']:<28} {size:>10}  {_params(model['parameters'])}")
            typer.echo(f"  from {model['source'] or 'a local build (no engram-model.json)'}")
        for name in missing:
            typer.echo(f"{name:<28} {'not pulled':>10}")
            typer.echo(f"  get it with: engram models pull {name}")

    run()
