"""The Taskiq broker and tasks of the benchmark, imported by the driver and by its workers.

Run by ``drive_taskiq.py`` as ``taskiq worker bench.suite.drivers.taskiq_tasks:broker --workers
<cores>``. The broker is taskiq-redis's ``ListQueueBroker`` (LPUSH/BRPOP on a Redis list: a
message is gone once a worker pops it, so delivery is at most once) on the driver's private Redis
(``BENCH_REDIS_URL``); results go to ``RedisAsyncResultBackend`` and are deleted when read.

Serializer: pickle. Taskiq's default formatter and taskiq-redis's result backend turn messages and
results into pydantic's JSON mode before the serializer sees them, which cannot carry bytes (W5)
even with ``PickleSerializer``; :class:`PickleFormatter` and :class:`PickleResultBackend` pickle
the python-mode dump instead (bytes stay bytes, as with the other peers' pickle). The tasks are
``async def`` and run on each worker process's event loop (no thread pool). Each worker process
adds itself to the Redis set :data:`READY_KEY` on startup.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

from redis.asyncio import Redis
from taskiq import TaskiqEvents, TaskiqFormatter, TaskiqResult, TaskiqState
from taskiq.message import BrokerMessage, TaskiqMessage
from taskiq.serializers import PickleSerializer
from taskiq_redis import ListQueueBroker, RedisAsyncResultBackend

from bench.suite import tasks

READY_KEY = "bench:ready"
QUEUE = "bench"
URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

MAX_CONNECTIONS = 64
"""Connection pool size of the broker and of the result backend (blocking pools: a ``kiq`` waits
for a free connection; without a bound, W1's ``gather`` would open one connection per task)."""
RESULT_SECONDS = 3600
"""Expiry of a result nobody read (read results are deleted)."""


class PickleFormatter(TaskiqFormatter):
    """Messages as the pickle of their python-mode dump (bytes arguments stay bytes)."""

    def dumps(self, message: TaskiqMessage) -> BrokerMessage:
        return BrokerMessage(
            task_id=message.task_id,
            task_name=message.task_name,
            message=pickle.dumps(message.model_dump(), protocol=pickle.HIGHEST_PROTOCOL),
            labels=message.labels,
        )

    def loads(self, message: bytes) -> TaskiqMessage:
        return TaskiqMessage.model_validate(pickle.loads(message))


class PickleResultBackend(RedisAsyncResultBackend[Any]):
    """Results stored as the pickle of their python-mode dump; read back by the parent class."""

    async def set_result(self, task_id: str, result: TaskiqResult[Any]) -> None:
        value = pickle.dumps(result.model_dump(), protocol=pickle.HIGHEST_PROTOCOL)
        async with Redis(connection_pool=self.redis_pool) as redis:
            await redis.set(self._task_name(task_id), value, ex=RESULT_SECONDS)


result_backend = PickleResultBackend(
    URL,
    keep_results=False,
    result_ex_time=RESULT_SECONDS,
    max_connection_pool_size=MAX_CONNECTIONS,
    serializer=PickleSerializer(),
)
broker = (
    ListQueueBroker(URL, queue_name=QUEUE, max_connection_pool_size=MAX_CONNECTIONS)
    .with_result_backend(result_backend)
    .with_serializer(PickleSerializer())
    .with_formatter(PickleFormatter())
)


@broker.task(task_name="bench.noop")
async def noop(x: int) -> int:
    return tasks.noop(x)


@broker.task(task_name="bench.busy")
async def busy(x: int) -> int:
    return tasks.busy(x)


@broker.task(task_name="bench.echo")
async def echo(data: bytes) -> bytes:
    return tasks.echo(data)


@broker.on_event(TaskiqEvents.WORKER_STARTUP)
async def _ready(_state: TaskiqState) -> None:
    client = Redis.from_url(URL)
    try:
        await client.sadd(READY_KEY, f"worker-{os.getpid()}")
    finally:
        await client.aclose()
