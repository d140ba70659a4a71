"""`engram ask QUESTION`: a question answered from an owner's memories (the operation
table's `answer`, bound by engram.cli.bind), printed with its route, timings and the
memories it used."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from engram.cli.bind import command
from engram.cli.common import cards, dump, emit, out, state
from engram.ops.table import ANSWER

if TYPE_CHECKING:
    from engram.answer.result import AnswerResult


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} ms"


def _answered(result: AnswerResult, values: dict[str, Any]) -> None:
    if state.as_json:
        emit(dump(result))
        return
    from rich.markup import escape

    out.print(f"[bold]{escape(result.answer) or '(no answer)'}[/]", highlight=False)
    detail = ""
    if result.kv is not None:
        detail = f" (KV {'hit' if result.kv.hit else 'miss, built'} {result.kv.key[:12]})"
    elif result.adapter is not None:
        detail = f" (adapter v{result.adapter.version})"
    out.print(f"route {result.route}{detail}: {escape(result.reason)}", highlight=False)
    t = result.timings
    tokens = "" if result.prompt_tokens is None else f"{result.prompt_tokens} prompt tokens"
    if result.cached_tokens:
        tokens += f" ({result.cached_tokens} from the KV block)"
    out.print(
        f"[dim]{escape(result.model)}; {tokens}{'; ' if tokens else ''}retrieval "
        f"{_ms(t.retrieval_ms)}, first token {_ms(t.ttft_ms)} (prefill {_ms(t.prefill_ms)}), "
        f"generate {_ms(t.generate_ms)}, total {_ms(t.total_ms)}[/]",
        highlight=False,
    )
    if result.memories:
        cards(
            f"{len(result.memories)} memories used, most relevant first (left: relevance 0-1)",
            [(f"{m.relevance:.2f}", m) for m in result.memories],
        )


def register(app: typer.Typer) -> None:
    """Put `engram ask` on `app`."""
    ask = command(ANSWER, _answered)
    app.command("ask", short_help=getattr(ask, "short_help", None))(ask)
