"""`engram lora train|eval|ls|merge|ask`: a cube's parametric memory from the terminal."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from engram.cli import common

if TYPE_CHECKING:
    from engram.config import EngramConfig
    from engram.parametric.examples import Fact

lora_app = typer.Typer(
    help="Parametric memory: LoRA adapters taught a cube's memories.", no_args_is_help=True
)

UserOpt = Annotated[str | None, typer.Option("--user", "-u", help="Owner: user id.")]
AgentOpt = Annotated[str | None, typer.Option("--agent", "-a", help="Owner: agent id.")]
ModelOpt = Annotated[
    str | None,
    typer.Option("--model", help="transformers checkpoint (default: lora.base_model setting)."),
]
VersionOpt = Annotated[
    int | None, typer.Option("--version", help="Adapter version (default: the latest).")
]


def _config() -> EngramConfig:
    return common.load_settings()


def _owner(user: str | None, agent: str | None) -> str:
    from engram.errors import ValidationError
    from engram.scope import Scope

    if not user and not agent:
        raise ValidationError("name the cube: --user or --agent")
    owner = Scope.of(user_id=user, agent_id=agent).owner
    assert owner is not None  # Scope.of (required=True) raises when there is no owner
    return owner


def _facts(user: str | None, agent: str | None) -> tuple[list[Fact], int]:
    """The owner's active memories as facts, and how many were too short to be one."""
    with common.opened() as memory:  # listing never loads the embedder
        return memory.lora.facts(user_id=user, agent_id=agent)


def _print(payload: dict[str, Any], text: str) -> None:
    print(json.dumps(payload, default=str) if common.state.as_json else text)


def _require_adapter(registry: Any, owner: str, user: str | None, agent: str | None) -> None:
    """Before any adapter exists, say which command makes one (not just "not found")."""
    if registry.versions(owner):
        return
    import shlex

    from engram.errors import NotFoundError

    flag = f"-u {shlex.quote(user)}" if user else f"-a {shlex.quote(agent or '')}"
    raise NotFoundError(
        f"{owner} has no adapter yet: teach one with `engram lora train {flag}` "
        "(it learns the owner's memories), then try again"
    )


def _run(fn: Any) -> Any:
    from engram.extras import require_extra

    def checked() -> Any:
        require_extra("parametric", "`engram lora`")
        return fn()

    return common.reports_errors(checked)()


@lora_app.command("train")
def train(
    user: UserOpt = None,
    agent: AgentOpt = None,
    model: ModelOpt = None,
    safeguard: Annotated[
        list[str] | None,
        typer.Option("--safeguard", help="Safeguard to apply (repeat; default: the setting)."),
    ] = None,
    naive: Annotated[bool, typer.Option("--naive", help="No safeguards at all.")] = False,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Passes over the batch.")] = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Start a new adapter instead of continuing.")
    ] = False,
) -> None:
    """Teach the cube's memories that its adapter does not know yet; saves a new version."""

    def run() -> None:
        owner = _owner(user, agent)
        with common.opened() as memory:  # listing never loads the embedder
            _, skipped = memory.lora.facts(user_id=user, agent_id=agent)
            m = memory.lora.train(
                user_id=user,
                agent_id=agent,
                model=model,
                safeguards=[] if naive else safeguard,
                epochs=epochs,
                fresh=fresh,
            )
        _print(
            {**m.to_json(), "path": str(m.path), "skipped": skipped},
            f"{owner}: adapter v{m.version} ({m.method}) knows {len(m.memory_ids)} memories, "
            f"{m.bytes / 1024:.0f} KiB, trained in {m.metrics['train_s']:.1f}s -> {m.path}"
            + (f" ({skipped} memories too short to teach)" if skipped else ""),
        )

    _run(run)


@lora_app.command("ls")
def ls(user: UserOpt = None, agent: AgentOpt = None) -> None:
    """Adapter versions of one cube (or of every cube)."""

    def run() -> None:
        from engram.parametric.cube import registry_for

        registry = registry_for(_config())
        owners = [_owner(user, agent)] if user or agent else registry.owners()
        rows = [m for o in owners for m in registry.versions(o)]
        lines = [
            f"{m.owner} v{m.version}  {m.method}  {len(m.memory_ids)} memories  "
            f"{m.bytes / 1024:.0f} KiB  {m.created_at[:19]}"
            for m in rows
        ]
        _print(
            {"adapters": [{**m.to_json(), "path": str(m.path)} for m in rows]},
            "\n".join(lines) or "no adapters",
        )

    _run(run)


@lora_app.command("eval")
def eval_(
    user: UserOpt = None, agent: AgentOpt = None, model: ModelOpt = None, version: VersionOpt = None
) -> None:
    """Recall of the cube's memories with and without its adapter, and perplexity drift."""

    def run() -> None:
        from engram.parametric.cube import load_base, registry_for
        from engram.parametric.evaluation import perplexity, recall
        from engram.parametric.general_text import GENERAL_TEXTS
        from engram.parametric.host import AdapterHost

        config = _config()
        owner = _owner(user, agent)
        registry = registry_for(config)
        _require_adapter(registry, owner, user, agent)
        manifest = registry.get(owner, version)
        host = AdapterHost(*load_base(model or config.lora.base_model, config))
        facts, _ = _facts(user, agent)
        taught = [f for f in facts if f.memory_id in set(manifest.memory_ids)]
        ppl0 = perplexity(host.model, host.tokenizer, GENERAL_TEXTS)
        before = recall(host.model, host.tokenizer, taught)
        host.load(manifest)
        after = recall(host.model, host.tokenizer, taught)
        ppl = perplexity(host.model, host.tokenizer, GENERAL_TEXTS)
        result = {
            "owner": owner,
            "version": manifest.version,
            "memories": len(taught),
            "recall_without": before,
            "recall_with": after,
            "ppl_drift_pct": 100 * (ppl / ppl0 - 1),
        }
        _print(
            result,
            f"{owner} v{manifest.version}: recall {after:.1%} with the adapter, {before:.1%} "
            f"without ({len(taught)} memories); general-text perplexity "
            f"{result['ppl_drift_pct']:+.1f}%",
        )

    _run(run)


@lora_app.command("merge")
def merge(
    versions: Annotated[str, typer.Option("--versions", help="Versions to merge, e.g. 1,2.")],
    user: UserOpt = None,
    agent: AgentOpt = None,
    model: ModelOpt = None,
    combination: Annotated[
        str, typer.Option("--combination", help="cat | svd (exact) or linear | ties (not exact).")
    ] = "cat",
) -> None:
    """Merge adapter versions of one cube into a new version."""

    def run() -> None:
        from engram.errors import ValidationError
        from engram.parametric.cube import load_base, registry_for
        from engram.parametric.host import AdapterHost
        from engram.parametric.registry import AdapterManifest

        if combination not in {"cat", "svd", "linear", "ties"}:
            raise ValidationError(f"unknown combination {combination!r}: cat, svd, linear, ties")
        try:
            numbers = [int(v) for v in versions.split(",") if v.strip()]
        except ValueError as err:
            raise ValidationError(f"--versions must be integers, got {versions!r}") from err
        config = _config()
        owner = _owner(user, agent)
        registry = registry_for(config)
        manifests = [registry.get(owner, n) for n in numbers]
        host = AdapterHost(*load_base(model or config.lora.base_model, config))
        names = [host.load(m, f"v{m.version}") for m in manifests]
        peft_config, state = host.merge(names, combination)  # type: ignore[arg-type]
        ids = list(dict.fromkeys(i for m in manifests for i in m.memory_ids))
        merged = registry.save(
            AdapterManifest(
                owner=owner,
                version=0,
                method=f"merge:{combination}",
                base_model=manifests[0].base_model,
                base_fingerprint=host.fingerprint,
                memory_ids=ids,
                hyperparameters={
                    "combination": combination,
                    "exact": combination in {"cat", "svd"},
                },
                parents=numbers,
            ),
            peft_config,
            state,
        )
        _print(
            {**merged.to_json(), "path": str(merged.path)},
            f"{owner}: v{merged.version} = {combination}({', '.join(names)}) -> {merged.path}",
        )

    _run(run)


@lora_app.command("ask")
def ask(
    prompt: Annotated[str, typer.Argument(help="Text the model continues.")],
    user: UserOpt = None,
    agent: AgentOpt = None,
    model: ModelOpt = None,
    version: VersionOpt = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Tokens to generate.")] = 16,
) -> None:
    """Continue a prompt with the cube's adapter and without it, side by side."""

    def run() -> None:
        from engram.parametric.cube import registry_for

        config = _config()
        owner = _owner(user, agent)
        registry = registry_for(config)
        _require_adapter(registry, owner, user, agent)
        with common.opened() as memory:
            answer = memory.lora.ask(
                prompt,
                user_id=user,
                agent_id=agent,
                model=model,
                version=version,
                max_tokens=max_tokens,
            )
        with_adapter, without = answer.with_adapter, answer.without_adapter
        _print(
            {"prompt": prompt, "with_adapter": with_adapter, "without_adapter": without},
            f"with adapter v{answer.version}: {prompt}{with_adapter}\n"
            f"without adapter: {prompt}{without}",
        )

    _run(run)
