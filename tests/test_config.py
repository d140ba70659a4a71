"""Configuration layering: defaults < TOML file < ENGRAM_* environment < arguments."""

from __future__ import annotations

from pathlib import Path

import pytest

from engram import ConfigError, EngramConfig, Memory, load_config
from engram.config import EmbedderConfig
from engram.embed import build_embedder
from engram.errors import StoreError


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


FILE = """
[search]
default_k = 5
pipeline = "bm25"

[limits]
max_text_chars = 500
"""


def test_defaults(engram_home: Path) -> None:
    cfg = load_config()
    assert cfg.home == engram_home
    assert cfg.sqlite_path == engram_home / "engram.db"
    assert cfg.search.default_k == 10
    assert cfg.search.pipeline == "hybrid"
    assert cfg.limits.max_text_chars == 32_000
    assert cfg.embedder.provider == "local"
    assert cfg.embedder.model is None
    assert cfg.sqlite.synchronous == "FULL"


def test_toml_file_in_engram_home(engram_home: Path) -> None:
    _write(engram_home / "config.toml", FILE)
    cfg = load_config()
    assert cfg.search.default_k == 5
    assert cfg.search.pipeline == "bm25"
    assert cfg.limits.max_text_chars == 500
    assert cfg.search.max_k == 1000  # untouched keys keep their defaults


def test_engram_config_points_at_another_file(
    tmp_path: Path, engram_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(engram_home / "config.toml", FILE)
    other = _write(tmp_path / "elsewhere.toml", "[search]\ndefault_k = 3\n")
    monkeypatch.setenv("ENGRAM_CONFIG", str(other))
    cfg = load_config()
    assert cfg.search.default_k == 3
    assert cfg.search.pipeline == "hybrid"  # the home file is not read at all


def test_home_argument_chooses_the_config_file(tmp_path: Path, engram_home: Path) -> None:
    _write(engram_home / "config.toml", "[search]\ndefault_k = 4\n")
    _write(tmp_path / "other-home" / "config.toml", "[search]\ndefault_k = 6\n")
    assert load_config().search.default_k == 4
    assert load_config(home=tmp_path / "other-home").search.default_k == 6


def test_environment_beats_file(engram_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(engram_home / "config.toml", FILE)
    monkeypatch.setenv("ENGRAM_SEARCH__DEFAULT_K", "7")
    cfg = load_config()
    assert cfg.search.default_k == 7
    assert cfg.search.pipeline == "bm25"  # nested sections merge key by key
    assert cfg.limits.max_text_chars == 500


def test_arguments_beat_environment_and_file(
    engram_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(engram_home / "config.toml", FILE)
    monkeypatch.setenv("ENGRAM_SEARCH__DEFAULT_K", "7")
    monkeypatch.setenv("ENGRAM_LIMITS__MAX_QUERY_CHARS", "77")
    cfg = load_config(search={"default_k": 9})
    assert cfg.search.default_k == 9
    assert cfg.search.pipeline == "bm25"
    assert cfg.limits.max_query_chars == 77
    assert cfg.limits.max_text_chars == 500


def test_environment_reaches_a_running_memory(
    tmp_path: Path, embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENGRAM_SEARCH__DEFAULT_K", "7")
    monkeypatch.setenv("ENGRAM_HOME", str(tmp_path / "from-env"))
    with Memory(embedder=embedder) as mem:
        assert mem.home == tmp_path / "from-env"
        assert mem.config.search.default_k == 7
        mem.add([f"Memory number {i} about the sea." for i in range(12)], user_id="alice")
        assert len(mem.search("sea", user_id="alice")) == 7
    assert (tmp_path / "from-env" / "engram.db").is_file()


def test_database_url(tmp_path: Path, embedder) -> None:
    target = tmp_path / "custom" / "my.db"
    cfg = load_config(database_url=f"sqlite:///{target}")
    assert cfg.sqlite_path == target
    with Memory(cfg, embedder=embedder) as mem:
        mem.add("stored in a custom file", user_id="alice")
    assert target.is_file()
    with pytest.raises(
        ConfigError, match="database_url must start with sqlite:/// or postgresql://"
    ):
        load_config(database_url="mysql://localhost/engram")
    with pytest.raises(StoreError, match="cannot reach PostgreSQL engram@127.0.0.1"):
        Memory(database_url="postgresql://nobody@127.0.0.1:1/engram", embedder=embedder)


@pytest.mark.parametrize(
    ("toml", "match"),
    [
        pytest.param("colour = 'blue'\n", "colour", id="top-level"),
        pytest.param("[search]\nfuzziness = 2\n", "search.fuzziness", id="nested"),
        pytest.param("[searhc]\ndefault_k = 2\n", "searhc", id="misspelled-section"),
    ],
)
def test_unknown_keys_in_file_are_refused(engram_home: Path, toml: str, match: str) -> None:
    _write(engram_home / "config.toml", toml)
    with pytest.raises(ConfigError, match=match) as info:
        load_config()
    assert "Extra inputs are not permitted" in str(info.value)


def test_unknown_keys_in_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="colour"):
        load_config(colour="blue")
    with pytest.raises(ConfigError, match="search.fuzziness"):
        load_config(search={"fuzziness": 2})
    with pytest.raises(ConfigError, match="embedder.modle"):
        Memory(load_config(home=tmp_path, embedder={"modle": "x"}))


def test_bad_values_are_config_errors(engram_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="search.default_k"):
        load_config(search={"default_k": 0})
    with pytest.raises(ConfigError, match="sqlite.synchronous"):
        load_config(sqlite={"synchronous": "OFF"})
    with pytest.raises(ConfigError, match="limits.max_text_chars"):
        load_config(limits={"max_text_chars": -5})
    monkeypatch.setenv("ENGRAM_SEARCH__DEFAULT_K", "seven")
    with pytest.raises(ConfigError, match="search.default_k"):
        load_config()


def test_problems_are_all_listed(engram_home: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(search={"default_k": 0, "candidates": -1}, limits={"max_batch": 0})
    message = str(info.value)
    for key in ("search.default_k", "search.candidates", "limits.max_batch"):
        assert key in message


def test_bad_toml_is_a_config_error(engram_home: Path) -> None:
    path = _write(engram_home / "config.toml", "[search\ndefault_k = = 3\n")
    with pytest.raises(ConfigError, match="is not valid TOML") as info:
        load_config()
    assert str(path) in str(info.value)


def test_missing_explicit_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGRAM_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="nope.toml does not exist"):
        load_config()
    monkeypatch.delenv("ENGRAM_CONFIG")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(config_file=tmp_path / "also-missing.toml")


def test_unknown_pipeline_name(tmp_path: Path, embedder, engram_home: Path) -> None:
    with pytest.raises(ConfigError, match="unknown retrieval pipeline 'fancy'; known: .*hybrid"):
        Memory(home=tmp_path, embedder=embedder, search={"pipeline": "fancy"})
    _write(engram_home / "config.toml", "[search]\npipeline = 'nope'\n")
    with pytest.raises(ConfigError, match="'nope'"):
        Memory(embedder=embedder)


def test_unknown_embedder_provider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="unknown embedder provider 'word2vec'; known:"):
        build_embedder(EmbedderConfig(provider="word2vec"))
    with pytest.raises(ConfigError, match="'word2vec'"):
        Memory(load_config(home=tmp_path, embedder={"provider": "word2vec"}))
    monkeypatch.setenv("ENGRAM_EMBEDDER__PROVIDER", "cohere")
    with pytest.raises(ConfigError, match="unknown embedder provider 'cohere'"):
        Memory(home=tmp_path)
    assert not (tmp_path / "engram.db").exists()


def test_embedder_settings_passed_as_a_keyword_are_not_mistaken_for_an_embedder(
    tmp_path: Path,
) -> None:
    """Every other config section can be given as a keyword (`search={...}`, `limits={...}`);
    `embedder={...}` must be read as settings too, or refused clearly, never crash later."""
    with pytest.raises(ConfigError):
        Memory(home=tmp_path, embedder={"provider": "word2vec"})


def test_embedder_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs embedder.model and embedder.base_url"):
        build_embedder(EmbedderConfig(provider="openai"))
    with pytest.raises(ConfigError, match="is not a directory"):
        build_embedder(EmbedderConfig(model=str(tmp_path / "no-such-model")))
    with pytest.raises(ConfigError, match="embedder.batch_size"):
        load_config(embedder={"batch_size": 0})


def test_config_object_and_keywords_are_exclusive(tmp_path: Path, embedder) -> None:
    cfg = load_config(home=tmp_path)
    with pytest.raises(ConfigError, match="not both"):
        Memory(cfg, embedder=embedder, home=tmp_path)
    with Memory(cfg, embedder=embedder) as mem:
        assert mem.home == tmp_path


def test_home_is_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = EngramConfig(home=Path("~/somewhere"))
    assert cfg.home == tmp_path / "somewhere"
    assert "~" not in str(cfg.sqlite_path)


@pytest.mark.parametrize("setting", ["home", "config_file"])
def test_non_path_locations_are_config_errors(setting: str) -> None:
    with pytest.raises(ConfigError, match=f"{setting} must be a path"):
        load_config(**{setting: 5})
    with pytest.raises(ConfigError, match=f"{setting} must be a path"):
        Memory(**{setting: 5})


def test_default_k_above_max_k_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"default_k \(50\) must not exceed max_k \(20\)"):
        load_config(search={"default_k": 50, "max_k": 20})
    assert load_config(search={"default_k": 20, "max_k": 20}).search.default_k == 20
