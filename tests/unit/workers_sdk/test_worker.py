"""Worker base class: subclass validation and handler colour detection."""

from __future__ import annotations

import pytest

from workers_sdk import TaskContext, Worker


def test_sync_handle_is_recorded_as_sync():
    """A `def handle` subclass is marked sync."""

    class Sync(Worker):
        def handle(self, task: TaskContext) -> bytes:
            return b""

    assert Sync._handle_is_async is False


def test_async_handle_is_recorded_as_async():
    """An `async def handle` subclass is marked async."""

    class Async(Worker):
        async def handle(self, task: TaskContext) -> bytes:
            return b""

    assert Async._handle_is_async is True


def test_colour_is_inherited_and_overridable():
    """A grandchild inherits its parent's colour unless it overrides handle."""

    class Parent(Worker):
        async def handle(self, task: TaskContext) -> bytes:
            return b""

    class Child(Parent):
        pass

    class SyncChild(Parent):
        def handle(self, task: TaskContext) -> bytes:  # type: ignore[override]
            return b""

    assert Child._handle_is_async is True
    assert SyncChild._handle_is_async is False


def test_missing_handle_fails_at_class_creation():
    """A subclass without handle raises TypeError when the class statement runs."""
    with pytest.raises(TypeError, match="must implement handle"):

        class NoHandle(Worker):
            pass


def test_abstract_intermediate_base_is_allowed_but_not_instantiable():
    """`abstract=True` defers the handle check; the class stays abstract."""

    class Base(Worker, abstract=True):
        greeting = b"hi"

    class Concrete(Base):
        def handle(self, task: TaskContext) -> bytes:
            return self.greeting

    with pytest.raises(TypeError):
        Base()  # type: ignore[abstract]
    assert isinstance(Concrete(), Worker)


def test_worker_itself_cannot_be_instantiated():
    """Worker is an abstract base class: building one raises TypeError naming handle."""
    with pytest.raises(TypeError, match=r"abstract method '?handle"):
        Worker()  # type: ignore[abstract]


def test_non_callable_handle_is_rejected():
    """`handle = 3` is not a method and is refused."""
    with pytest.raises(TypeError, match="must be a method"):

        class Bad(Worker):
            handle = 3  # type: ignore[assignment]


@pytest.mark.parametrize("hook", ["setup", "teardown"])
def test_sync_hooks_are_rejected(hook):
    """setup and teardown must be `async def`."""
    with pytest.raises(TypeError, match=f"{hook}\\(\\) must be 'async def'"):
        type(hook, (Worker,), {"handle": lambda self, task: b"", hook: lambda self: None})


async def test_default_hooks_are_noops():
    """The default setup/teardown can be awaited and do nothing."""

    class W(Worker):
        def handle(self, task: TaskContext) -> bytes:
            return b""

    w = W()
    state = dict(vars(w))
    assert await w.setup() is None
    assert await w.teardown() is None
    assert vars(w) == state
