"""The Celery app and tasks of the benchmark, imported by the driver and by its Celery workers.

Run by ``drive_celery.py`` as ``celery -A bench.suite.drivers.celery_tasks worker --pool prefork
-c <cores>``. Broker and result backend are the driver's private Redis (``BENCH_REDIS_URL``);
messages and results are pickled (enabled explicitly: JSON cannot carry W5's bytes). Each pool
child and the consumer add themselves to the Redis set :data:`READY_KEY` once started, which is
how the driver knows the worker is ready.
"""

from __future__ import annotations

import os
from typing import Any

import redis
from celery import Celery
from celery.signals import worker_process_init, worker_ready

from bench.suite import tasks

READY_KEY = "bench:ready"
URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
ACKS_LATE = os.environ.get("BENCH_CELERY_ACKS_LATE", "0") == "1"
"""``task_acks_late``: off (Celery's default) acknowledges a task when a worker takes it."""
PREFETCH = int(os.environ.get("BENCH_CELERY_PREFETCH", "4"))
"""``worker_prefetch_multiplier`` (Celery's default, 4): messages reserved per pool process."""

app = Celery("bench", broker=URL, backend=URL, set_as_current=True)
app.conf.update(
    task_serializer="pickle",
    result_serializer="pickle",
    accept_content=["pickle"],
    result_accept_content=["pickle"],
    task_acks_late=ACKS_LATE,
    worker_prefetch_multiplier=PREFETCH,
    task_ignore_result=False,
    result_expires=3600,
    worker_send_task_events=False,
    task_send_sent_event=False,
    worker_disable_rate_limits=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.noop")
def noop(x: int) -> int:
    return tasks.noop(x)


@app.task(name="bench.busy")
def busy(x: int) -> int:
    return tasks.busy(x)


@app.task(name="bench.echo")
def echo(data: bytes) -> bytes:
    return tasks.echo(data)


def _register(member: str) -> None:
    client = redis.Redis.from_url(URL)
    try:
        client.sadd(READY_KEY, member)
    finally:
        client.close()


@worker_process_init.connect
def _child_ready(**_: Any) -> None:
    _register(f"child-{os.getpid()}")


@worker_ready.connect
def _consumer_ready(**_: Any) -> None:
    _register(f"consumer-{os.getpid()}")
