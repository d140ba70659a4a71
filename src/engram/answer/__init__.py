"""Memories that answer: `Memory.answer(question, route="auto" | "text" | "kv" | "lora")`.

Routes (engram.answer.routes) and routers (engram.answer.router) are registries of small
classes; models load on first use (engram.answer.models), so importing this package is
cheap."""

from __future__ import annotations

from engram.answer.result import AdapterUse, AnswerResult, AnswerTimings, KVUse, UsedMemory

__all__ = ["AdapterUse", "AnswerResult", "AnswerTimings", "KVUse", "UsedMemory"]
