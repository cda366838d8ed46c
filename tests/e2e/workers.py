"""Worker classes the end-to-end tests run in real worker processes."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time

from workers_sdk import TaskContext, Worker

log = logging.getLogger("tests.e2e.workers")


class EchoWorker(Worker):
    """Returns the payload reversed; payloads starting with b"fail:" raise ValueError."""

    async def handle(self, task: TaskContext) -> bytes:
        if task.payload.startswith(b"fail:"):
            raise ValueError(f"cannot handle {task.payload.decode()}")
        return task.payload[::-1]


class SlowWorker(Worker):
    """Logs "started <task id>", then: b"sleep:S" sleeps S seconds on the loop, b"block" blocks
    the whole event loop for a minute; returns the payload."""

    async def handle(self, task: TaskContext) -> bytes:
        log.warning("started %s", task.task_id)
        if task.payload.startswith(b"sleep:"):
            await asyncio.sleep(float(task.payload.removeprefix(b"sleep:")))
        elif task.payload == b"block":
            time.sleep(60)  # noqa: ASYNC251 - a handler that blocks the loop, on purpose
        return task.payload


class PacedEchoWorker(Worker):
    """Returns the payload reversed after 1 ms, so a run lasts long enough to be disturbed."""

    async def handle(self, task: TaskContext) -> bytes:
        await asyncio.sleep(0.001)
        return task.payload[::-1]


class SharedEchoWorker(Worker):
    """Returns the session's shared data followed by the payload."""

    async def handle(self, task: TaskContext) -> bytes:
        return task.shared_data() + task.payload


class ThrottledEchoWorker(Worker):
    """Returns the payload after 5 ms per task, one task at a time (a synchronous handler on
    one thread): a worker slower than its clients, so work piles up in the queue manager."""

    def handle(self, task: TaskContext) -> bytes:
        time.sleep(0.005)
        return task.payload


class PayloadWorker(Worker):
    """Reads its task's payload, puts the bytes reversed, answers with the input's sha256."""

    def handle(self, task: TaskContext) -> bytes:
        (ref,) = task.refs
        with task.open(ref) as view:
            data = view.memoryview()
            digest = hashlib.sha256(data).hexdigest()
            task.put(bytes(data)[::-1])
        return digest.encode()
