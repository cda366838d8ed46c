from __future__ import annotations

import pytest

from alpcrun.proto import Batch, SessionAttributes, WorkerInstruction, WorkerRegistration
from alpcrun.queue_manager.core import CoreLimits, QueueCore
from alpcrun.testing import FakeClock


class Recorder:
    """Records what the core sends on a stream (WorkerControl, WorkerData)."""

    def __init__(self) -> None:
        self.sent: list = []
        self.closed = False

    def send(self, message) -> None:
        self.sent.append(message)

    def close(self) -> None:
        self.closed = True

    def instructions(self, kind: int) -> list[WorkerInstruction]:
        return [m for m in self.sent if m.type == kind]


class ClientRecorder:
    def __init__(self) -> None:
        self.ready = 0
        self.room = 0
        self.closed = False
        self.superseded = False

    def results_ready(self) -> None:
        self.ready += 1

    def room_available(self) -> None:
        self.room += 1

    def close(self, *, superseded: bool = False) -> None:
        self.closed = True
        self.superseded = superseded


class Harness:
    def __init__(self, **limits) -> None:
        self.clock = FakeClock()
        self.core = QueueCore(limits=CoreLimits(**limits), clock=self.clock)
        self.n = 0

    def session(self, **attrs):
        attrs.setdefault("app_id", "app")
        return self.core.create_session(SessionAttributes(**attrs))

    def worker(self, **labels):
        control = Recorder()
        w = self.core.register_worker(WorkerRegistration(node="n", pod="p", labels=labels), control)
        return w, control

    def batch(self, ntasks: int = 3, priority: int = 0) -> Batch:
        self.n += 1
        b = Batch(id=f"b{self.n}", priority=priority)
        for i in range(ntasks):
            b.tasks.add(id=f"b{self.n}-t{i}", payload=b"x")
        return b

    def connect(self, worker):
        """Open the WorkerStream of a bound worker."""
        data = Recorder()
        self.core.open_worker_stream(worker.id, worker.session_id, data)
        return data

    @staticmethod
    def answer(batch: Batch, fail: set[str] = frozenset()) -> Batch:
        out = Batch(id=batch.id, dispatch_id=batch.dispatch_id)
        for t in batch.tasks:
            if t.id in fail:
                out.tasks.add(id=t.id).error.message = "bad"
            else:
                out.tasks.add(id=t.id, payload=t.payload + b"!")
        return out


@pytest.fixture
def h() -> Harness:
    return Harness()
