from alpcrun.proto import Batch
from alpcrun.queue_manager.queues import QueuedBatch, TaskQueue


def item(name: str, priority: int = 0, ntasks: int = 1) -> QueuedBatch:
    return QueuedBatch(Batch(id=name), ntasks, 10 * ntasks, priority)


def names(q: TaskQueue) -> list[str]:
    return [i.batch.id for i in q.drain()]


def test_priority_queue_orders_by_priority_then_arrival():
    """Higher batch priority first; FIFO among equal priorities."""
    q = TaskQueue()
    for name, prio in [("a", 1), ("b", 5), ("c", 1), ("d", 5), ("e", 3)]:
        q.push(item(name, prio))
    assert names(q) == ["b", "d", "e", "a", "c"]


def test_fifo_queue_ignores_priority():
    """A FIFO queue keeps arrival order whatever the batch priority."""
    q = TaskQueue(fifo=True)
    for name, prio in [("a", 1), ("b", 5), ("c", 3)]:
        q.push(item(name, prio))
    assert names(q) == ["a", "b", "c"]


def test_push_front_goes_ahead_of_equal_priority():
    """A requeued batch is served before batches of its priority, after higher ones."""
    for fifo in (False, True):
        q = TaskQueue(fifo=fifo)
        q.push(item("a", 1))
        q.push(item("b", 1))
        q.push_front(item("r", 1))
        assert names(q)[0] == "r"
    q = TaskQueue()
    q.push(item("hi", 9))
    q.push(item("lo", 1))
    q.push_front(item("r", 1))
    assert names(q) == ["hi", "r", "lo"]


def test_counts_track_tasks_and_bytes():
    """Task and byte counters follow pushes and pops."""
    q = TaskQueue()
    q.push(item("a", ntasks=3))
    q.push(item("b", ntasks=5))
    assert (len(q), q.tasks, q.bytes) == (2, 8, 80)
    q.pop()
    st = q.statistics()
    assert (st.batches, st.tasks, st.bytes) == (1, 5, 50)
    q.pop()
    assert q.pop() is None
    assert (q.tasks, q.bytes) == (0, 0)


def test_switching_queue_type_keeps_batches():
    """Changing priority↔FIFO live keeps every queued batch."""
    q = TaskQueue()
    q.push(item("a", 1))
    q.push(item("b", 9))
    q.set_fifo(True)
    assert q.fifo
    assert sorted(names(q)) == ["a", "b"]
