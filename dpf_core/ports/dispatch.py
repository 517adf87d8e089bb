"""Op dispatch shared by both worlds: each registers a handler per op type; the task executor looks it up."""

from __future__ import annotations

from typing import Generic, TypeVar

from .ops import OpError

H = TypeVar("H")


class OpDispatcher(Generic[H]):
    """Handlers by op type (the exact class, then its bases). An op nobody handles is an OpError, not a
    crash: the procedure may catch it, and the task fails with a readable reason."""

    world = "this world"

    def __init__(self) -> None:
        self._handlers: dict[type, H] = {}

    def register(self, op_type: type, handler: H) -> None:
        if op_type in self._handlers:
            raise ValueError(f"a handler for {op_type.__name__} is already registered")
        self._handlers[op_type] = handler

    def handles(self, op_type: type) -> bool:
        return any(t in self._handlers for t in op_type.__mro__)

    def handler_for(self, op: object) -> H:
        for t in type(op).__mro__:
            handler = self._handlers.get(t)
            if handler is not None:
                return handler
        raise OpError(f"{self.world} has no handler for {type(op).__name__}", "Unimplemented")
