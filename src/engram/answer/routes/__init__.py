"""Answer routes by name: one registry, read by validation (`route=`), the auto router and
the core. A route is one class in one file behind `AnswerRoute`."""

from __future__ import annotations

from engram.answer.routes.base import AnswerJob, AnswerRoute, RouteAnswer
from engram.answer.routes.kv import KVRoute
from engram.answer.routes.lora import LoRARoute
from engram.answer.routes.text import TextRoute

ROUTES: dict[str, type[AnswerRoute]] = {}


def register_route(route: type[AnswerRoute]) -> type[AnswerRoute]:
    """Make a route selectable by its `name` (`Memory.answer(route=...)`)."""
    ROUTES[route.name] = route
    return route


for _route in (TextRoute, KVRoute, LoRARoute):
    register_route(_route)

__all__ = ["ROUTES", "AnswerJob", "AnswerRoute", "RouteAnswer", "register_route"]
