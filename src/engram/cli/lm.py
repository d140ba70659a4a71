"""`engram lm build|info`: rebuild the project LM, describe a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from engram.cli import common

lm_app = typer.Typer(help="The project's small language model.", no_args_is_help=True)


def _default_out() -> Path:
    """$ENGRAM_HOME/models/engram-lm (or --home): a rebuild never overwrites the package."""
    return common.load_settings().home / "models" / "engram-lm"


def _summary(manifest: dict[str, Any]) -> str:
    probe = manifest["copy_probe"]
    return (
        f"{manifest['parameters'] / 1e6:.2f}M parameters, val loss {manifest['val_loss']} "
        f"(perplexity {manifest['val_perplexity']}), copy probe "
        f"{probe['accuracy']:.0%} of {probe['n']}, trained {manifest['recipe']['steps']} steps "
        f"in {manifest['train_wall_s']}s"
    )


@lm_app.command("build")
def build(
    out: Annotated[
        Path | None,
        typer.Option(help="Checkpoint folder (default: $ENGRAM_HOME/models/engram-lm)."),
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Training steps (default: recipe).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Toy model in seconds (tests).")] = False,
    seed: Annotated[int, typer.Option(help="Seed for corpus, init and batches.")] = 0,
) -> None:
    """Train the LM from scratch (deterministic) and save it with its manifest."""

    def run() -> None:
        from engram.lm.train import build_model

        target = out or _default_out()
        quiet = common.state.as_json
        log = None if quiet else (lambda msg: typer.echo(msg, err=True))
        manifest = build_model(target, steps=steps, quick=quick, seed=seed, log=log)
        if quiet:
            print(json.dumps({"path": str(target), **manifest}))
        else:
            typer.echo(f"{target}: {_summary(manifest)}")

    common.reports_errors(run)()


@lm_app.command("info")
def info(
    model: Annotated[
        Path | None, typer.Option(help="Checkpoint folder (default: the packaged engram LM).")
    ] = None,
) -> None:
    """Print a checkpoint's shape, parameter count and build manifest."""

    def run() -> None:
        from engram.lm.checkpoint import default_model_path, load_model, read_manifest

        path = model or default_model_path()
        manifest = read_manifest(path)
        lm, _tokenizer = load_model(path)
        cfg = lm.config
        shape = {
            "model_type": cfg.model_type,
            "vocab_size": cfg.vocab_size,
            "hidden_size": cfg.hidden_size,
            "num_hidden_layers": cfg.num_hidden_layers,
            "num_attention_heads": cfg.num_attention_heads,
            "num_key_value_heads": getattr(cfg, "num_key_value_heads", None),
            "max_position_embeddings": getattr(cfg, "max_position_embeddings", None),
        }
        size = sum(f.stat().st_size for f in Path(path).iterdir() if f.is_file())
        params = sum(p.numel() for p in lm.parameters())
        result = {
            "path": str(path),
            "parameters": params,
            "bytes": size,
            "config": shape,
            "manifest": manifest,
        }
        if common.state.as_json:
            print(json.dumps(result))
            return
        typer.echo(f"{path}  ({size / 1e6:.1f} MB, {params / 1e6:.2f}M parameters)")
        typer.echo("  " + ", ".join(f"{k}={v}" for k, v in shape.items()))
        if manifest is not None:
            typer.echo(f"  {_summary(manifest)}")
            typer.echo(json.dumps(manifest, indent=2))

    common.reports_errors(run)()
