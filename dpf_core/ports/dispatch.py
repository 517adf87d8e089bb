"""Op dispatch shared by both worlds: each registers a handler per op type; the task executor looks it up."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .ops import OpError
from .ports import Procedure

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


def inline_composites(
    procedure: Procedure, now: Callable[[], float] | None = None, native: Callable[[object], bool] | None = None
) -> Procedure:
    """`procedure` with every composite op (one with an `expand` method, e.g. AwaitReboot) replaced by its
    expansion into primitive ops, unless `native(op)` says the world runs it itself. Results and errors
    flow as if the procedure had yielded the primitive ops; closing the wrapper closes the procedure."""
    send: Any = None
    throw: BaseException | None = None
    while True:
        try:
            op = procedure.throw(throw) if throw is not None else procedure.send(send)
        except StopIteration as stop:
            return stop.value
        send, throw = None, None
        expand = getattr(op, "expand", None)
        try:
            if expand is not None and not (native is not None and native(op)):
                send = yield from expand(now)
            else:
                send = yield op
        except GeneratorExit:
            procedure.close()
            raise
        except Exception as e:  # an op's error goes into the procedure at the op that asked for it
            throw = e
