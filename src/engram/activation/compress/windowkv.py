"""WindowKV: score windows of `span` consecutive entries, not single tokens, and keep whole
windows (local semantic units); all KV heads of a layer share the chosen windows."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engram.activation.block import KVBlock
from engram.activation.build import Observation
from engram.activation.compress.base import Evictor, forced
from engram.activation.compress.registry import register_compressor
from engram.activation.layers import DenseLayer


@register_compressor
@dataclass
class WindowKV(Evictor):
    name = "windowkv"
    span: int = 8
    window: int = 32

    def observe(self) -> int:
        return self.window

    def score(
        self, index: int, layer: DenseLayer, block: KVBlock, observation: Observation | None
    ) -> torch.Tensor:
        obs = self.need(observation)
        per_entry = obs.scores(index, layer.positions).mean(dim=0)  # shared by all heads
        tokens = per_entry.shape[0]
        pad = (-tokens) % self.span
        padded = torch.cat([per_entry, per_entry.new_zeros(pad)])
        windows = padded.reshape(-1, self.span).mean(dim=1)
        # Every entry carries its window's score; earlier entries win ties inside a window
        # so a budget that cuts a window keeps its start.
        order = torch.arange(tokens, dtype=torch.float32) / (tokens * 1e6)
        shared = windows.repeat_interleave(self.span)[:tokens] - order
        heads = layer.positions.shape[0]
        return shared.expand(heads, -1) + forced(layer, 0, block.n_tokens - obs.window)
