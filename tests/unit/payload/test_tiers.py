"""The RAM (sealed memfd) and disk (rename on commit) tier backends, and read-only views."""

from __future__ import annotations

import mmap
import os

import numpy as np
import pytest
from ulid import ULID

from alpcrun.errors import InvalidArgument, NotFound, PayloadStateError, ResourceExhausted
from alpcrun.payload.tiers.disk import DiskBackend
from alpcrun.payload.tiers.ram import RamBackend
from alpcrun.payload.views import MappedPayload


def _id() -> str:
    return str(ULID())


@pytest.fixture(params=["ram", "disk"])
def backend(request, tmp_path):
    b = RamBackend(1 << 20) if request.param == "ram" else DiskBackend(tmp_path / "d", 1 << 20)
    yield b
    b.close()


def test_a_payload_written_in_chunks_reads_back_after_commit(backend):
    """Chunks written at offsets are read back exactly once the payload is committed."""
    pid = _id()
    backend.create(pid, 10)
    backend.write(pid, 5, b"world")
    backend.write(pid, 0, b"hello")
    with pytest.raises(PayloadStateError):
        backend.read(pid, 0, 10)  # not committed yet
    backend.commit(pid)
    assert backend.read(pid, 0, 10) == b"helloworld"
    assert backend.read(pid, 3, 4) == b"lowo"
    with MappedPayload(backend.readonly_fd(pid), 10) as view:
        assert bytes(view.memoryview()) == b"helloworld"


def test_writes_after_commit_and_out_of_range_are_refused(backend):
    """A committed payload refuses writes; a range past the end names the field."""
    pid = _id()
    backend.create(pid, 4)
    with pytest.raises(InvalidArgument) as err:
        backend.write(pid, 2, b"xyz")
    assert err.value.field == "offset"
    backend.write(pid, 0, b"abcd")
    backend.commit(pid)
    with pytest.raises(PayloadStateError):
        backend.write(pid, 0, b"z")
    with pytest.raises(PayloadStateError):
        backend.writable_fd(pid)
    with pytest.raises(InvalidArgument):
        backend.read(pid, 3, 2)


def test_capacity_ids_and_free(backend):
    """Over capacity is RESOURCE_EXHAUSTED, a non-ULID id INVALID_ARGUMENT; free gives room back."""
    with pytest.raises(InvalidArgument):
        backend.create("../../etc/passwd", 1)
    pid = _id()
    backend.create(pid, 1 << 20)
    with pytest.raises(ResourceExhausted):
        backend.create(_id(), 1)
    assert backend.statistics().used == 1 << 20
    assert backend.free(pid)
    assert not backend.free(pid)
    assert backend.statistics().used == 0
    with pytest.raises(NotFound):
        backend.size(pid)


def test_a_same_node_producer_writes_through_its_own_mapping(backend):
    """The writable descriptor is mapped by the producer; its bytes are the payload's."""
    pid = _id()
    backend.create(pid, 8)
    fd = backend.writable_fd(pid)
    with mmap.mmap(fd, 8) as m:
        m[:] = b"12345678"
    os.close(fd)
    backend.commit(pid)
    assert backend.read(pid, 0, 8) == b"12345678"


def test_ram_commit_is_refused_while_a_writable_mapping_is_open():
    """The seal fails while the producer still maps the memfd writable: no late writes."""
    ram = RamBackend(1 << 20)
    pid = _id()
    ram.create(pid, 4096)
    fd = ram.writable_fd(pid)
    m = mmap.mmap(fd, 4096)
    with pytest.raises(PayloadStateError, match="writable mapping"):
        ram.commit(pid)
    m.close()
    os.close(fd)
    ram.commit(pid)
    ro = ram.readonly_fd(pid)
    with pytest.raises(PermissionError):
        mmap.mmap(ro, 4096)  # sealed: no writable mapping, even from a duplicate descriptor
    with pytest.raises(PermissionError):
        os.pwrite(ro, b"x", 0)
    os.close(ro)
    ram.close()


def test_disk_renames_on_commit_and_a_restart_keeps_only_committed_files(tmp_path):
    """A .part file becomes the payload on commit; a new backend adopts it and drops leftovers."""
    d = tmp_path / "d"
    disk = DiskBackend(d, 1 << 20)
    done, half = _id(), _id()
    disk.create(done, 3)
    disk.write(done, 0, b"abc")
    assert (d / f"{done}.part").exists()
    disk.commit(done)
    assert sorted(p.name for p in d.iterdir()) == [done]
    disk.create(half, 3)
    (d / "notes.txt").write_text("not a payload")
    again = DiskBackend(d, 1 << 20)  # the first agent died without closing
    assert again.payload_ids() == [done]
    assert again.read(done, 0, 3) == b"abc"
    assert not (d / f"{half}.part").exists()
    assert (d / "notes.txt").exists()


def test_views_are_read_only_and_share_the_mapping(tmp_path):
    """Arrays from one mapping share memory, refuse writes, and see the file's bytes live."""
    disk = DiskBackend(tmp_path / "d", 1 << 20)
    pid = _id()
    disk.create(pid, 64)
    disk.write(pid, 0, np.arange(8, dtype=np.float64).tobytes())
    disk.commit(pid)
    view = MappedPayload(disk.readonly_fd(pid), 64)
    a = view.array(np.float64, (2, 4))
    b = view.array(np.float64)
    assert np.shares_memory(a, b)
    assert not a.flags.writeable
    assert a[1, 3] == 7.0
    fd = os.open(tmp_path / "d" / pid, os.O_WRONLY)
    os.pwrite(fd, np.float64(42).tobytes(), 56)  # a change under the mapping shows: no copy
    os.close(fd)
    assert a[1, 3] == 42.0
    assert view.close() is False  # views alive: the mapping stays until they go
    del a, b
