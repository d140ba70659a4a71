"""`engram bench serve` with two servers on one PostgreSQL: the load runs through both,
and every acknowledged write is read back through a server."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from engram.bench import serve as bench
from engram.cli.app import app


@pytest.mark.timeout(600)
def test_two_servers_on_one_database_lose_no_acknowledged_write(pg_url: str) -> None:
    result = bench.run(
        clients=4, seconds=4, owners=2, seed_memories=8, servers=2, database_url=pg_url
    )
    total = result["total"]
    assert result["config"]["servers"] == 2 and result["config"]["backend"] == "postgres"
    assert total["errors"] == 0 and total["requests"] > 0
    assert total["acknowledged_writes"] > 0 and total["lost_writes"] == 0
    assert "2 real `engram serve` processes" in bench.markdown(result, "engram bench serve")


def test_several_servers_need_a_shared_database() -> None:
    out = CliRunner().invoke(app, ["bench", "serve", "--servers", "2"])
    assert out.exit_code == 2 and "shared database" in out.output
    out = CliRunner().invoke(app, ["bench", "serve", "--database-url", "sqlite:///x.db"])
    assert out.exit_code == 2 and "postgresql://" in out.output
