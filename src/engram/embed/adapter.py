"""Low-rank weight deltas for the packaged encoder (`embedder.adapter`).

An adapter is a safetensors file of LoRA factors: for each adapted linear layer `name`,
`name.lora_A` (rank x in) and `name.lora_B` (out x rank), with the scale folded into B, and
metadata naming the base model and how the adapter was made. Loading adds `B @ A` to the
base weight once (both encoders, numpy and torch), so an adapted encoder costs nothing
extra per text. The packaged `conv-v2` (and `conv-v1`, on half its data) was trained by
`engram models tune-embedder` on the project's generated conversations
(docs/retrieval.md); its vectors are another space than
the plain model's, so its name joins the embedder's (`all-MiniLM-L6-v2+conv-v2`) and a store
records which one built it.

`auto` (the default) uses `conv-v2` for a new store; a store built with the plain model or
another packaged adapter keeps it, so upgrading never strands a store's vectors.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engram.errors import ConfigError

DEFAULT_ADAPTER = "conv-v2"
PACKAGED_DIR = Path(__file__).resolve().parent.parent / "data" / "embedders"
AUTO, NONE = "auto", "none"


@dataclass(frozen=True)
class Adapter:
    name: str
    base: str  # the model the factors were trained on
    factors: dict[str, tuple[np.ndarray, np.ndarray]]  # weight name -> (A, B)
    info: dict[str, Any]

    def apply(self, weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """`weights` (name -> out x in array) with every adapted weight changed."""
        missing = sorted(set(self.factors) - set(weights))
        if missing:
            raise ConfigError(
                f"embedder adapter {self.name!r} adapts weights the model lacks "
                f"({', '.join(missing[:3])}); it was trained for {self.base!r}"
            )
        out = dict(weights)
        for name, (a, b) in self.factors.items():
            if (b.shape[0], a.shape[1]) != weights[name].shape:
                raise ConfigError(
                    f"embedder adapter {self.name!r} does not fit {name} "
                    f"{weights[name].shape}; it was trained for {self.base!r}"
                )
            out[name] = weights[name] + (b @ a).astype(weights[name].dtype)
        return out

    def apply_torch(self, module: Any) -> None:
        """Add the deltas to a torch module's weights in place."""
        import torch

        params = dict(module.named_parameters())
        changed = self.apply(
            {n: params[n].detach().cpu().numpy() for n in self.factors if n in params}
        )
        with torch.no_grad():
            for name in self.factors:
                params[name].copy_(torch.from_numpy(changed[name]))


def resolve(setting: str, model: str | None, recorded: str | None, base_name: str) -> str | None:
    """The adapter to load: None for none. `auto` means the packaged default on the packaged
    model, unless the store's vectors (`recorded`) were made by the plain model or by
    another packaged adapter, which it keeps: a newer default never strands a store."""
    if setting == NONE:
        return None
    if setting != AUTO:
        return setting
    if model is not None or recorded == base_name:
        return None
    kept = (recorded or "").removeprefix(f"{base_name}+")
    if recorded and kept != recorded and (PACKAGED_DIR / f"{kept}.safetensors").is_file():
        return kept
    return DEFAULT_ADAPTER


def adapter_for(setting: str, model: str | None, base_name: str) -> Adapter | None:
    """The adapter an encoder built directly (no store to follow) loads."""
    chosen = resolve(setting, model, None, base_name)
    return None if chosen is None else load_adapter(chosen)


def load_adapter(setting: str) -> Adapter:
    """A packaged adapter by name, or an adapter file by path."""
    path = PACKAGED_DIR / f"{setting}.safetensors"
    if not path.is_file():
        path = Path(setting).expanduser()
    if not path.is_file():
        known = sorted(p.stem for p in PACKAGED_DIR.glob("*.safetensors"))
        raise ConfigError(
            f"embedder adapter {setting!r} is neither a packaged adapter ({', '.join(known)}), "
            "'auto', 'none' nor an adapter file"
        )
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - not a dict
    except (OSError, SafetensorError) as err:
        raise ConfigError(f"cannot read embedder adapter {path}: {err}") from err
    names = {k.rsplit(".", 1)[0] for k in tensors}
    factors: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in sorted(names):
        a, b = tensors.get(f"{name}.lora_A"), tensors.get(f"{name}.lora_B")
        if a is None or b is None or a.shape[0] != b.shape[1]:
            raise ConfigError(f"embedder adapter {path} has no matching factors for {name}")
        factors[name] = (a.astype(np.float32), b.astype(np.float32))
    if "base" not in meta:
        raise ConfigError(f"embedder adapter {path} names no base model in its metadata")
    info = json.loads(meta.get("info", "{}"))
    name = path.stem if path.parent == PACKAGED_DIR else meta.get("name", path.stem)
    return Adapter(name, meta["base"], factors, info)


def save_adapter(
    path: Path,
    name: str,
    base: str,
    factors: dict[str, tuple[np.ndarray, np.ndarray]],
    info: dict[str, Any],
) -> None:
    """Write factors as float16 (an adapter of rank 16 on MiniLM: 1.4 MB)."""
    from safetensors.numpy import save_file

    tensors: dict[str, np.ndarray] = {}
    for weight, (a, b) in factors.items():
        tensors[f"{weight}.lora_A"] = a.astype(np.float16)
        tensors[f"{weight}.lora_B"] = b.astype(np.float16)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"name": name, "base": base, "info": json.dumps(info)})
