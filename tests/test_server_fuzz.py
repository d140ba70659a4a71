"""Schemathesis against /openapi.json: generated requests (valid and invalid) to every
route never get a 5xx, and every response matches the documented schema, status codes and
headers. The example count is bounded so the file runs in well under a minute."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from _server_helpers import make_keys
from engram import Memory
from engram.config import ServerConfig
from engram.embed import Embedder
from engram.server.app import create_app
from engram.store.sqlite_keys import SQLiteKeyStore

# Every other built-in check runs. Not `positive_data_acceptance`: the schema describes
# shapes, while values (known memory types, non-blank text, id characters, k range, filter
# operators) are checked by Memory, so some schema-valid requests are rightly 422.
EXCLUDED = [schemathesis.checks.positive_data_acceptance]
FUZZ = settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[Any]:
    home = tmp_path_factory.mktemp("fuzz")
    # the answering routes run the packaged tiny LM: the fuzzer tests HTTP, not a model
    with Memory(home=home, embedder=embedder, answer={"model": "engram-lm"}) as memory:
        store = SQLiteKeyStore(home / "keys.db")
        keys = make_keys(store)
        seeded = memory.add("the fuzzer's seed memory", user_id="alice")[0].id
        app = create_app(memory, store, ServerConfig(rate_limit_per_s=0, max_body_bytes=65_536))
        yield app, keys, seeded


def _fuzz(served: Any, headers: dict[str, str], examples: int, memory_id: str | None) -> int:
    """Run every operation of the spec, valid and invalid data; returns the cases run."""
    app = served[0]
    api = schemathesis.openapi.from_asgi("/openapi.json", app)
    ran = 0
    for result in api.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fixed = (
                {"memory_id": memory_id} if memory_id and "{memory_id}" in operation.path else None
            )
            strategy = operation.as_strategy(mode, path_parameters=fixed)

            @given(case=strategy)
            @settings(FUZZ, max_examples=examples)
            def check(case: schemathesis.Case) -> None:
                nonlocal ran
                ran += 1
                case.call_and_validate(headers=headers, excluded_checks=EXCLUDED)

            try:
                check()
            except Unsatisfiable:
                # nothing to break: an operation without parameters or body
                assert mode is GenerationMode.NEGATIVE, operation.label
    return ran


@pytest.mark.slow
def test_no_server_errors_as_owner(served: Any) -> None:
    assert _fuzz(served, served[1].alice, examples=15, memory_id=None) > 100


@pytest.mark.slow
def test_no_server_errors_as_admin(served: Any) -> None:
    _, keys, seeded = served
    assert _fuzz(served, keys.admin, examples=5, memory_id=seeded) > 40
