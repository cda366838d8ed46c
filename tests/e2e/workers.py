"""Worker classes the end-to-end tests run in real worker processes."""

from __future__ import annotations

from workers_sdk import TaskContext, Worker


class EchoWorker(Worker):
    """Returns the payload reversed; payloads starting with b"fail:" raise ValueError."""

    async def handle(self, task: TaskContext) -> bytes:
        if task.payload.startswith(b"fail:"):
            raise ValueError(f"cannot handle {task.payload.decode()}")
        return task.payload[::-1]
