"""The ``Worker`` base class users subclass: one required ``handle()``, optional async hooks.

Whether ``handle`` is ``def`` or ``async def`` is decided once, when the subclass is
created: async handlers run on the event loop, sync ones in a thread pool. The engine that
drives a worker is :class:`workers_sdk.runner.WorkerRunner`; users never subclass it.
"""

from __future__ import annotations

import abc
import inspect
from collections.abc import Awaitable
from typing import Any, ClassVar

from workers_sdk.context import TaskContext

_HOOKS = ("setup", "teardown")


class Worker(abc.ABC):
    """Base class of a worker: subclass it and implement :meth:`handle`.

    Example::

        class Upper(Worker):
            async def handle(self, task: TaskContext) -> bytes:
                return task.payload.upper()

    ``handle`` may be ``def`` (it then runs in a thread pool sized by the ``threads``
    setting) or ``async def`` (it then runs on the event loop and must not block).
    ``setup`` and ``teardown`` are always ``async def``.

    An intermediate base class that leaves ``handle`` to its own subclasses is declared with
    ``class MyBase(Worker, abstract=True)``.
    """

    _handle_is_async: ClassVar[bool] = False
    """Set by ``__init_subclass__``: True when ``handle`` is a coroutine function."""

    def __init_subclass__(cls, *, abstract: bool = False, **kwargs: Any) -> None:
        """Validate the subclass and record the colour of its ``handle``.

        Raises:
            TypeError: ``handle`` is not overridden (and ``abstract`` is False), is not
                callable, or ``setup``/``teardown`` is not ``async def``.
        """
        super().__init_subclass__(**kwargs)
        for hook in _HOOKS:
            if not inspect.iscoroutinefunction(getattr(cls, hook)):
                raise TypeError(f"{cls.__qualname__}.{hook}() must be 'async def'")
        handle = getattr(cls, "handle", None)
        if handle is None or handle is Worker.handle:
            if abstract:
                return
            raise TypeError(
                f"{cls.__qualname__} must implement handle(self, task: TaskContext) -> bytes"
            )
        if not callable(handle):
            raise TypeError(f"{cls.__qualname__}.handle must be a method, not {type(handle)}")
        cls._handle_is_async = inspect.iscoroutinefunction(handle)

    @abc.abstractmethod
    def handle(self, task: TaskContext) -> bytes | Awaitable[bytes]:
        """Process one task and return its result bytes.

        Override it as ``def handle(self, task) -> bytes`` or
        ``async def handle(self, task) -> bytes``.

        Args:
            task: The task's context: id, payload, attempt, session and worker ids.

        Returns:
            The result payload (``bytes``; ``bytearray`` and ``memoryview`` are accepted).

        Raises:
            workers_sdk.NonRetryableError: The task can never succeed; it is not retried.
            workers_sdk.Retry: This attempt failed; the task may be retried.
            Exception: Any other exception fails the attempt as retryable.
        """

    async def setup(self) -> None:  # noqa: B027 - an optional hook, a no-op by design
        """Prepare resources once, before the worker registers (e.g. load a model)."""

    async def teardown(self) -> None:  # noqa: B027 - an optional hook, a no-op by design
        """Release resources once, after the worker stopped taking and finishing work."""


__all__ = ["Worker"]
