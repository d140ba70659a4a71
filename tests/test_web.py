"""The web memory browser is served locally, with a strict CSP, outside the OpenAPI spec."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from engram import Memory
from engram.embed import Embedder
from engram.server.app import create_app
from engram.server.web import STATIC_DIR
from engram.store.sqlite_keys import SQLiteKeyStore


def _no_embedder() -> Embedder:
    raise AssertionError("serving the page must not load the embedding model")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with Memory(home=tmp_path, embedder=_no_embedder) as memory:
        app = create_app(memory, SQLiteKeyStore(tmp_path / "keys.db"), mcp=False)
        with TestClient(app, base_url="http://127.0.0.1") as test_client:
            yield test_client


def test_page_is_served_at_root_with_a_strict_policy(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<title>Engram memories</title>" in response.text
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy
    assert "unsafe-inline" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"


def test_every_asset_the_page_names_is_served_locally(client: TestClient) -> None:
    page = client.get("/").text
    assets = re.findall(r'(?:src|href)="([^"#]+)"', page)
    assert "/static/app.js" in assets and "/static/style.css" in assets
    assert all(a.startswith("/static/") for a in assets), assets  # no CDN, nothing remote
    imports = _module_graph("app.js")
    assert {"api.js", "dom.js", "tabs.js", "diff.js", "timeline.js"} <= imports
    assert imports == {p.name for p in STATIC_DIR.glob("*.js")} - {"app.js"}  # none unused
    for asset in [*assets, *(f"/static/{name}" for name in sorted(imports))]:
        response = client.get(asset)
        assert response.status_code == 200, asset
        assert response.headers["x-content-type-options"] == "nosniff"
    assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")


def _module_graph(entry: str) -> set[str]:
    """Every module `entry` imports, directly or not; each import is a local `./x.js`."""
    seen: set[str] = set()
    todo = [entry]
    while todo:
        source = (STATIC_DIR / todo.pop()).read_text()
        for spec in re.findall(r'^import .* from "([^"]+)";$', source, re.M):
            assert spec.startswith("./") and spec.endswith(".js"), spec  # nothing remote
            name = spec[2:]
            if name not in seen:
                seen.add(name)
                todo.append(name)
    return seen


def test_page_routes_stay_out_of_the_openapi_spec(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert paths, "the REST routes are listed"
    assert "/" not in paths
    assert not [p for p in paths if p.startswith("/static")]


def test_missing_asset_is_a_404_not_a_500(client: TestClient) -> None:
    assert client.get("/static/nope.js").status_code == 404
    assert client.get("/static/../app.py").status_code == 404


def test_scripts_never_write_markup() -> None:
    """Memory text is attacker-controlled: the front end only ever sets text."""
    for script in STATIC_DIR.glob("*.js"):
        source = script.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in source, f"{script.name} uses {sink}"
