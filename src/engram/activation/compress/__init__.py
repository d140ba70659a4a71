"""KV compression methods: one class per file behind `Compressor`, composed by wrapping."""

from engram.activation.compress.base import Compressor, Evictor
from engram.activation.compress.fp16 import Float16
from engram.activation.compress.kivi import KIVI
from engram.activation.compress.knorm import KeyNorm
from engram.activation.compress.prefixkv import PrefixKV
from engram.activation.compress.registry import (
    COMPRESSORS,
    describe,
    method_from_spec,
    parse_method,
    register_compressor,
)
from engram.activation.compress.rotatekv import RotateKV
from engram.activation.compress.snapkv import SnapKV
from engram.activation.compress.streaming import StreamingLLM
from engram.activation.compress.windowkv import WindowKV

__all__ = [
    "COMPRESSORS",
    "KIVI",
    "Compressor",
    "Evictor",
    "Float16",
    "KeyNorm",
    "PrefixKV",
    "RotateKV",
    "SnapKV",
    "StreamingLLM",
    "WindowKV",
    "describe",
    "method_from_spec",
    "parse_method",
    "register_compressor",
]
