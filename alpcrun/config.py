"""Settings for every alpcrun process: pydantic-settings, env prefix ``ALPCRUNCH_``, YAML, flags.

Precedence, highest first: explicit overrides (CLI flags) > environment variables > the YAML
file > defaults. The YAML file (``--config FILE`` or ``ALPCRUNCH_CONFIG``) may hold a section per
process (``queue_manager``, ``worker``, ``client``, ...); top-level keys apply to every process
that has such a setting, and a top-level key that is neither a section nor a setting of any
process is an error (one file may serve every process). ALPCRUN.CH's documented keys are
accepted as aliases (``loglevel``, ``bufferSize``, ``queueType``, ``schedulerInterval``,
``workerTimeout``, ...). Durations take Go-style strings (``"60s"``, ``"1m30s"``, ``"250ms"``)
or seconds.
"""

from __future__ import annotations

import difflib
import os
import re
import socket
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import yaml
from pydantic import (
    AliasChoices,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from alpcrun import constants
from alpcrun.addresses import parse_address
from alpcrun.affinity import format_cpus, parse_cpu_list
from alpcrun.errors import ConfigError

_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: object) -> float:
    """Parse a Go-style duration ("1m30s", "250ms") or a number of seconds into seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a number or a string like '60s'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            seconds = _parse_go_duration(text, value)
    else:
        raise ValueError("a duration must be a number or a string like '60s'")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def _parse_go_duration(text: str, value: object) -> float:
    pos, seconds = 0, 0.0
    for match in _DURATION_RE.finditer(text):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"invalid duration {value!r} (use e.g. '60s', '1m30s', '250ms')")
    return seconds


Seconds = Annotated[float, BeforeValidator(parse_duration)]
"""A duration in seconds that also accepts Go-style strings."""

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([KMGT]?)(i?B?)\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_bytes(value: object) -> int:
    """Parse a byte size: an integer, or a string like "1GB", "512MiB", "64k" (powers of 1024)."""
    if isinstance(value, bool):
        raise ValueError("a size must be a number of bytes or a string like '1GB'")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    match = _SIZE_RE.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"invalid size {value!r} (use e.g. 1073741824, '1GB', '512MiB')")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).upper()])


Bytes = Annotated[int, BeforeValidator(parse_bytes)]
"""A size in bytes that also accepts strings like ``"1GB"`` (K/M/G/T are powers of 1024)."""


def _cpu_list(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError("a CPU list must be a string like '3' or '0-3,6'")
    return format_cpus(parse_cpu_list(value))


CpuList = Annotated[str, BeforeValidator(_cpu_list)]
"""CPUs in cpuset syntax (``"3"``, ``"0-3,6"``), kept in canonical form."""

_OFF = frozenset({"", "off", "none", "false", "no"})


def _port_or_off(value: object) -> object:
    if isinstance(value, str) and value.strip().lower() in _OFF:
        return None
    return value


PortOrOff = Annotated[int | None, BeforeValidator(_port_or_off)]
"""A TCP port, or ``"off"`` (also ``""``/``"none"``) for none."""


def _read_path(value: object) -> object:
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.lower() in _OFF:
        return "off"
    if text.lower() == "auto":
        return "auto"
    parse_address(text)  # ValueError names what is wrong
    return text


ReadPath = Annotated[str, BeforeValidator(_read_path)]
"""``"auto"``, ``"off"``, ``host:port`` or ``unix:PATH`` (see ``WorkerSettings``)."""

LogLevel = Literal["debug", "info", "warning", "error"]

# ALPCRUN.CH key → our field name.
_ALIASES = {
    "loglevel": "log_level",
    "logLevel": "log_level",
    "appid": "app_id",
    "bufferSize": "buffer_size",
    "queueType": "queue_type",
    "schedulerInterval": "scheduler_interval",
    "workerTimeout": "worker_timeout",
    "maxTTL": "max_ttl",
    "cleanupInterval": "cleanup_interval",
    "cacheSize": "cache_size",
    "centralCacheAddr": "central_cache_addr",
    "caCert": "ca_cert",
}

_yaml_data: ContextVar[dict[str, Any] | None] = ContextVar("_yaml_data", default=None)


def _lower_level(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


class _YamlSource(PydanticBaseSettingsSource):
    """Values from the YAML file selected by :func:`load_settings`."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        data = _yaml_data.get() or {}
        return data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_yaml_data.get() or {})


def read_api_key_file(path: str) -> str:
    """The API key held in the file ``path``, without its trailing newline.

    Raises:
        ConfigError: Naming the file: it is missing or unreadable, empty, holds more than one
            line, or holds what cannot travel as gRPC metadata (not printable ASCII, or
            leading or trailing spaces).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read api_key_file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"api_key_file {path} is not UTF-8 text") from None
    key = text.rstrip("\r\n")
    if not key:
        raise ConfigError(f"api_key_file {path} is empty")
    if "\n" in key or "\r" in key:
        raise ConfigError(f"api_key_file {path} holds more than one line; it must hold the key")
    if not (key.isascii() and key.isprintable()) or key.strip() != key:
        raise ConfigError(
            f"api_key_file {path}: the key must be printable ASCII without leading or "
            "trailing spaces (it is sent as gRPC metadata)"
        )
    return key


class _KeyFromFile(PydanticBaseSettingsSource):
    """A source whose ``api_key_file`` is read into ``api_key`` (at that source's precedence).

    So ``--api-key-file`` beats ``ALPCRUNCH_API_KEY``, and ``ALPCRUNCH_API_KEY_FILE`` beats a
    key in the YAML file, as flags beat the environment and the environment the file.
    """

    def __init__(self, inner: PydanticBaseSettingsSource) -> None:
        super().__init__(inner.settings_cls)
        self._inner = inner

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._inner.get_field_value(field, field_name)

    def __call__(self) -> dict[str, Any]:
        data = self._inner()
        path = data.get("api_key_file")
        if path is None:
            return data
        if data.get("api_key") is not None:
            raise ConfigError(
                f"both api_key and api_key_file ({path}) are set in the same place; give one "
                "(--api-key or --api-key-file, ALPCRUNCH_API_KEY or ALPCRUNCH_API_KEY_FILE)"
            )
        return {**data, "api_key": read_api_key_file(str(path))}


class _Base(BaseSettings):
    """Settings shared by every process."""

    model_config = SettingsConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    section: ClassVar[str] = ""

    log_level: Annotated[LogLevel, BeforeValidator(_lower_level)] = "info"
    """Logging level: debug, info, warning or error."""
    log_json: bool = False
    """Write logs as JSON lines (one object per record)."""
    api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("api_key", "ALPCRUNCH_API_KEY")
    )
    """Shared API key sent/checked as ``api_key`` metadata on every call (env ALPCRUNCH_API_KEY).
    Given as ``--api-key`` it is readable by every local user (``/proc/PID/cmdline``): prefer
    ``api_key_file`` or the environment."""
    api_key_file: str | None = Field(
        default=None, validation_alias=AliasChoices("api_key_file", "ALPCRUNCH_API_KEY_FILE")
    )
    """File holding the API key (env ALPCRUNCH_API_KEY_FILE), e.g. a mounted Kubernetes
    Secret: read once when the settings are built, a trailing newline dropped. It sets
    ``api_key`` at its own precedence (flag > environment > YAML file); both in one place is
    an error."""
    max_message_bytes: int = Field(default=constants.MAX_MESSAGE_BYTES, ge=1024, le=1 << 30)
    """Largest gRPC message sent or received."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags (init) > environment > YAML file > defaults; each may give a key file."""
        sources = (init_settings, env_settings, _YamlSource(settings_cls))
        return tuple(_KeyFromFile(source) for source in sources)

    def masked(self) -> dict[str, Any]:
        """The effective settings as plain data, secrets masked."""
        out = self.model_dump(mode="json")
        for name, value in out.items():
            if isinstance(getattr(self, name), SecretStr) and value:
                out[name] = "********"
        return out


class _Tls(_Base):
    """TLS settings every process has (files are read and checked at start: ``alpcrun.tls``).

    A server process serves TLS with ``tls_cert``/``tls_key``; every channel a process opens
    (except ``unix:`` addresses) is TLS and verifies the server against ``ca_cert``.
    """

    tls: bool = False
    """Serve TLS (servers) and dial every alpcrun server over TLS (clients)."""
    tls_cert: str | None = None
    """PEM certificate chain file: a server's certificate, and the client certificate this
    process presents when a server requires one (mutual TLS)."""
    tls_key: str | None = None
    """PEM private key file of ``tls_cert`` (unencrypted)."""
    ca_cert: str | None = None
    """PEM CA certificates file the servers dialled must chain to (unset: the system roots);
    on a server with ``tls_client_auth``, the CA client certificates must chain to."""


class _TlsClient(_Tls):
    """TLS settings of a process that dials alpcrun servers."""

    tls_server_name: str | None = None
    """Name expected in the certificates of the servers dialled, instead of the host of their
    address (e.g. when a node agent is dialled by IP)."""


class _Server(_Base):
    """Settings every server process has."""

    cpu_affinity: CpuList | None = None
    """Run every thread of the process on these CPUs (cpuset syntax, e.g. ``"3"``); unset:
    any CPU. See :mod:`alpcrun.affinity`."""
    metrics_timeout: Seconds = Field(default=10.0, gt=0)
    """``/metrics``: a scrape's request must arrive whole within this long of connecting, and
    the answer be read within this long again; else the connection is closed."""
    metrics_max_connections: int = Field(default=32, ge=1)
    """``/metrics``: connections open at once; a new one beyond closes the connection that
    has waited longest for its request, or is answered 503 when all are being answered."""


class QueueManagerSettings(_Tls, _Server):
    """Settings of ``alpcrun queue-manager`` (env prefix ``ALPCRUNCH_QM_``)."""

    model_config = SettingsConfigDict(env_prefix="ALPCRUNCH_QM_")
    section: ClassVar[str] = "queue_manager"

    host: str = "0.0.0.0"
    """Address the gRPC server listens on."""
    port: int = Field(default=constants.QUEUE_MANAGER_PORT, ge=0, le=65535)
    """gRPC port (0 picks a free one)."""
    metrics_port: int | None = Field(default=constants.QUEUE_MANAGER_METRICS_PORT, ge=0, le=65535)
    """Prometheus /metrics HTTP port; unset disables it, 0 picks a free one."""
    auth_disabled: bool = False
    """Accept calls without an API key (never in production)."""
    tls_client_auth: bool = False
    """With ``tls``: require a client certificate signed by ``ca_cert`` (mutual TLS)."""
    scheduler_interval: Seconds = Field(default=1.0, gt=0)
    """Scheduler tick (also reacts to events at once)."""
    worker_timeout: Seconds = Field(default=60.0, gt=0)
    """A worker whose heartbeat is older than this is declared lost."""
    heartbeat_interval: Seconds = Field(default=5.0, gt=0)
    """Heartbeat interval asked of workers."""
    bind_stream_timeout: Seconds = Field(default=30.0, gt=0)
    """A bound worker that has not opened its WorkerStream this long after BIND is declared
    lost (its WorkerUpdate stream is ended) and the session's slot goes to another worker.
    A bound worker without a stream whose heartbeat reports no or another session is sent
    BIND again, at most once per heartbeat_interval."""
    buffer_size: int = Field(default=10_000, ge=1)
    """Queued batches per session before the client stream is paused (backpressure)."""
    max_pending_bytes: Bytes = Field(default=256 << 20, ge=1 << 20)
    """Queued task bytes per session before its client stream is paused. Byte bounds count
    charged bytes: the serialized size plus 128 bytes per task and 512 per batch, about what
    the messages cost in memory (docs/fault-tolerance.md, Limits)."""
    max_total_bytes: Bytes = Field(default=1 << 30, ge=1 << 20)
    """Task bytes (queued, in flight, waiting for a retry) plus result bytes (not yet
    acknowledged) of all sessions together before every client stream is paused."""
    max_buffered_results: int = Field(default=10_000, ge=1)
    """Result batches buffered per session before dispatch for it slows down."""
    max_result_bytes: Bytes = Field(default=256 << 20, ge=1 << 20)
    """Result bytes per session (undelivered or unacknowledged) before dispatch for it pauses."""
    max_dead_letter_bytes: Bytes = Field(default=64 << 20, ge=1 << 16)
    """Dead-letter bytes per session before it refuses new batches (RESOURCE_EXHAUSTED) until
    letters are resubmitted or discarded."""
    max_total_dead_letter_bytes: Bytes = Field(default=256 << 20, ge=1 << 16)
    """Dead-letter bytes of all sessions together before every session refuses new batches."""
    max_sessions: int = Field(default=10_000, ge=1)
    """Sessions held (open, and closed within session_retention) before CreateSession fails
    with RESOURCE_EXHAUSTED."""
    max_sessions_per_key: int = Field(default=10_000, ge=1)
    """Sessions held per API key (the key a CreateSession call presents) before it fails."""
    max_registered_workers: int = Field(default=10_000, ge=1)
    """Registered workers before a new registration fails with RESOURCE_EXHAUSTED."""
    max_label_bytes: Bytes = Field(default=4096, ge=64)
    """UTF-8 bytes of a session's tags, of its worker selector, and of a worker's labels (keys
    and values) before the request is INVALID_ARGUMENT."""
    queue_type: Literal["priority", "fifo"] = "priority"
    """Default queue type of new sessions."""
    session_retention: Seconds = Field(default=300.0, ge=0)
    """How long closed or expired sessions stay visible before they are forgotten."""
    session_expiry: Seconds = Field(default=3600.0, ge=0)
    """Close a session with no client attached, no work and no activity for this long (0: never)."""
    unused_session_expiry: Seconds = Field(default=300.0, ge=0)
    """The same for a session that was never given a task, when shorter than session_expiry
    (0: as session_expiry; session_expiry 0 means never for both)."""
    min_bind_time: Seconds = Field(default=1.0, ge=0)
    """A worker bound more recently than this is not reclaimed or preempted (anti-thrashing)."""
    payload_quota: Bytes = Field(default=64 << 30, ge=1)
    """Payload bytes one session may hold at once (docs/payloads.md); more is refused with
    RESOURCE_EXHAUSTED naming payload_quota_bytes."""
    payload_pending_ttl: Seconds = Field(default=600.0, gt=0)
    """A payload allocated and not committed for this long is reclaimed."""
    payload_lease_ttl: Seconds = Field(default=30.0, gt=0)
    """A read lease lives this long unless renewed (the queue manager renews the leases of
    attempts in flight on live workers every tick)."""
    payload_node_timeout: Seconds = Field(default=30.0, gt=0)
    """A node agent that sends no heartbeat for this long is lost, with its payloads."""
    shutdown_grace: Seconds = Field(default=10.0, ge=0)
    """On SIGTERM: how long in-flight work may take to finish."""
    journal: str | None = None
    """SQLite file journaling sessions, queued and in-flight batches, undelivered results and
    dead letters (WAL, batched writes); recovered on start. Unset: state is in memory only."""
    journal_flush_interval: Seconds = Field(default=0.001, gt=0, le=1)
    """Most time a change waits before it is written to the journal (results wait for it)."""
    journal_sync: Literal["normal", "full"] = "normal"
    """SQLite synchronous mode: normal survives a crash of the process; full also survives
    the loss of the machine's power, at a cost in throughput."""
    journal_salvage: bool = False
    """Start on a damaged journal with what can still be read, instead of refusing to start:
    the damaged files are moved aside and every loss is logged (docs/fault-tolerance.md)."""
    journal_max_transaction_bytes: Bytes = Field(default=1 << 20, ge=64 << 10, le=1 << 30)
    """Changes written to the journal in one transaction, about (a single larger batch is
    written alone): a backlog, after the disk was full, is written in pieces this size."""

    @model_validator(mode="after")
    def _heartbeats_fit_in_timeout(self) -> QueueManagerSettings:
        if self.heartbeat_interval >= self.worker_timeout:
            raise ValueError(
                f"heartbeat_interval ({self.heartbeat_interval:g}s) must be shorter than "
                f"worker_timeout ({self.worker_timeout:g}s), or every worker is declared lost"
            )
        return self


class WorkerSettings(_TlsClient):
    """Settings of ``alpcrun worker`` and ``python -m workers_sdk`` (env ``ALPCRUNCH_WORKER_``)."""

    model_config = SettingsConfigDict(env_prefix="ALPCRUNCH_WORKER_")
    section: ClassVar[str] = "worker"

    queue_manager: str = f"localhost:{constants.QUEUE_MANAGER_PORT}"
    """Queue manager address (host:port)."""
    node: str = Field(default_factory=socket.gethostname)
    """Kubernetes node name (ALPCRUNCH_WORKER_NODE; Downward API spec.nodeName)."""
    pod: str = Field(default_factory=lambda: str(os.getpid()))
    """Pod name (ALPCRUNCH_WORKER_POD; Downward API metadata.name)."""
    labels: dict[str, str] = Field(default_factory=dict)
    """Labels matched against sessions' worker selectors, e.g. {"gpu": "true"}."""
    concurrency: int = Field(default=2, ge=1, le=1024)
    """Batches processed at once."""
    threads: int | None = Field(default=None, ge=1, le=1024)
    """Executor threads for synchronous handle(); default: concurrency."""
    drain_timeout: Seconds = Field(default=30.0, ge=0)
    """On SIGTERM: how long in-flight batches may take before the worker exits."""
    reconnect_delay: Seconds = Field(default=1.0, gt=0)
    """Pause before reconnecting after the queue manager went away."""
    node_agent: str | None = f"localhost:{constants.NODE_AGENT_PORT}"
    """Node agent address for shared data (unset: always read from the central cache)."""
    node_read_path: ReadPath = "auto"
    """Where shared-data reads go first: the node agent's read path (docs/shared-data.md),
    ``host:port`` or ``unix:PATH``; ``"auto"``: the ``node_agent`` host on port 3338 (off
    with ``tls``, or when ``node_agent`` is a Unix socket); ``"off"``: gRPC only."""
    central_cache: str | None = f"localhost:{constants.CENTRAL_CACHE_PORT}"
    """Central cache address, used when the node agent cannot be reached."""
    payload_socket: str = ""
    """The node agent's payload socket on this node: payloads held here are opened without
    copying and ``task.put`` writes straight into the agent's memory ("": payload bytes
    stream over the network to and from the agents that hold them)."""

    def read_path_address(self) -> str | None:
        """The node read path address ``node_read_path`` resolves to (None: none)."""
        value = self.node_read_path
        if value == "off" or self.node_agent is None:
            return None
        if value != "auto":
            return value
        if self.tls or self.node_agent.startswith("unix:"):
            return None
        target = self.node_agent.removeprefix("dns:///").removeprefix("dns:")
        host, _, port = target.rpartition(":")
        if not host or not port.isdigit():  # no port given: the whole target is the host
            host = target
        return f"{host}:{constants.NODE_AGENT_READ_PORT}"


class ClientSettings(_TlsClient):
    """Settings of the client SDK and the admin CLI (env prefix ``ALPCRUNCH_CLIENT_``)."""

    model_config = SettingsConfigDict(env_prefix="ALPCRUNCH_CLIENT_")
    section: ClassVar[str] = "client"

    queue_manager: str = f"localhost:{constants.QUEUE_MANAGER_PORT}"
    """Queue manager address (host:port)."""
    max_batch_tasks: int = Field(default=1000, ge=1, le=100_000)
    """Most tasks auto-batched into one batch."""
    max_batch_bytes: int = Field(default=4 << 20, ge=1024)
    """Most payload bytes auto-batched into one batch."""
    linger: Seconds = Field(default=0.0, ge=0)
    """How long a partly filled batch waits for more tasks (0: flush on the next loop turn)."""
    reconnect_timeout: Seconds = Field(default=60.0, ge=0)
    """How long to keep trying to reach the queue manager again after a lost connection
    before pending tasks and calls fail with ``ReconnectFailed`` (0: fail at once)."""
    central_cache: str = f"localhost:{constants.CENTRAL_CACHE_PORT}"
    """Central cache address for ``session.set_shared_data``."""
    node: str = ""
    """This machine's node name, when a node agent runs on it: ``session.put`` places payloads
    on this node first, and opens payloads held here without copying them."""
    payload_socket: str = ""
    """The local node agent's payload socket ("" when none: payload bytes stream over the
    network to and from the agents that hold them)."""


class _CacheServer(_TlsClient, _Server):
    """Settings every shared-data server has."""

    host: str = "0.0.0.0"
    """Address the gRPC server listens on."""
    auth_disabled: bool = False
    """Accept calls without an API key (never in production)."""
    tls_client_auth: bool = False
    """With ``tls``: require a client certificate signed by ``ca_cert`` (mutual TLS)."""
    max_value_bytes: Bytes = Field(default=1 << 30, ge=1)
    """Largest shared-data value accepted or fetched."""
    chunk_bytes: Bytes = Field(default=1 << 20, ge=1024, le=16 << 20)
    """Data bytes per streamed chunk."""
    cleanup_interval: Seconds = Field(default=1.0, gt=0)
    """How often expired entries are dropped."""


class CentralCacheSettings(_CacheServer):
    """Settings of ``alpcrun central-cache`` (env prefix ``ALPCRUNCH_CACHE_``)."""

    model_config = SettingsConfigDict(env_prefix="ALPCRUNCH_CACHE_")
    section: ClassVar[str] = "central_cache"

    port: int = Field(default=constants.CENTRAL_CACHE_PORT, ge=0, le=65535)
    """gRPC port (0 picks a free one)."""
    metrics_port: int | None = Field(default=constants.CENTRAL_CACHE_METRICS_PORT, ge=0, le=65535)
    """Prometheus /metrics HTTP port; unset disables it, 0 picks a free one."""
    max_ttl: Seconds = Field(default=600.0, gt=0)
    """Longest TTL of shared data (longer asks are refused; 0 on a request means this)."""
    max_bytes: Bytes = Field(default=4 << 30, ge=1)
    """Bytes of shared data held at once; uploads beyond are RESOURCE_EXHAUSTED."""
    queue_manager: str | None = None
    """Queue manager address: when set, shared data of sessions it reports closed is deleted."""
    session_poll_interval: Seconds = Field(default=5.0, gt=0)
    """How often the queue manager is asked which sessions are closed."""


class NodeAgentSettings(_CacheServer):
    """Settings of ``alpcrun node-agent`` (env prefix ``ALPCRUNCH_NODE_``)."""

    model_config = SettingsConfigDict(env_prefix="ALPCRUNCH_NODE_")
    section: ClassVar[str] = "node_agent"

    port: int = Field(default=constants.NODE_AGENT_PORT, ge=0, le=65535)
    """gRPC port (0 picks a free one)."""
    metrics_port: int | None = Field(default=constants.NODE_AGENT_METRICS_PORT, ge=0, le=65535)
    """Prometheus /metrics HTTP port; unset disables it, 0 picks a free one."""
    cache_size: Bytes = Field(default=1 << 30, ge=1)
    """Bytes the node cache holds (LRU beyond), e.g. ``"1GB"``."""
    central_cache_addr: str = f"localhost:{constants.CENTRAL_CACHE_PORT}"
    """Central cache address the node cache pulls from on a miss."""
    fetch_timeout: Seconds = Field(default=120.0, gt=0)
    """Longest a fetch from the central cache may take."""
    unix_socket: str | None = None
    """Also serve on this Unix socket path (workers on the node dial ``unix:PATH``); it stays
    plaintext with ``tls`` (node-local, guarded by the file's permissions)."""
    read_port: PortOrOff = Field(default=constants.NODE_AGENT_READ_PORT, ge=0, le=65535)
    """TCP port of the read path (shared-data reads without gRPC, docs/shared-data.md); 0
    picks a free one, ``"off"`` serves none. Not served with ``tls`` (it is plaintext)."""
    read_socket: str | None = None
    """Also serve the read path on this Unix socket path (plaintext, also with ``tls``)."""
    read_idle_timeout: Seconds = Field(default=60.0, gt=0)
    """Close a read-path connection on which nothing happens for this long (no whole request
    arrives, no answer is written or read, no fetch is pending); clients reconnect."""
    read_max_connections: int = Field(default=1024, ge=1)
    """Read-path connections open at once (TCP and Unix socket together); a new one beyond
    closes the connection idle longest, or is closed itself when none is idle."""
    queue_manager: str | None = None
    """Queue manager address: with it the node agent also runs the node's payload store
    (docs/payloads.md), registered with the queue manager's catalog; None: no payload store."""
    node: str = Field(default_factory=socket.gethostname)
    """This node's name in the payload catalog (the Kubernetes node name in the chart)."""
    ram_bytes: Bytes = Field(default=1 << 30, ge=0)
    """RAM tier capacity of the payload store, e.g. ``"4GB"`` (0: no RAM tier)."""
    disk_dir: str | None = None
    """Directory of the payload store's disk tier (None: no disk tier)."""
    disk_bytes: Bytes = Field(default=10 << 30, ge=0)
    """Disk tier capacity."""
    payload_socket: str | None = None
    """Unix socket where workers and clients on this node get payload descriptors (zero-copy
    reads, writes straight into the store); None: they stream over the data path instead."""
    advertise_address: str | None = None
    """``host:port`` other nodes reach this agent's payload data path at (default: the host it
    listens on, or this host's name when it listens on every address, and the gRPC port)."""


S = TypeVar("S", bound=_Base)

_PROCESSES: tuple[type[_Base], ...] = (
    QueueManagerSettings,
    WorkerSettings,
    ClientSettings,
    CentralCacheSettings,
    NodeAgentSettings,
)
# Processes whose settings live outside this module (they import it), by section and fields,
# so that a file shared with them reads the same in a process that never imports them.
# tests/unit/test_config_file.py keeps this in step with alpcrun.scaler.settings.ScalerSettings.
_OTHER_PROCESSES: dict[str, frozenset[str]] = {
    "scaler": frozenset(
        {
            *_Base.model_fields,
            "deployment",
            "namespace",
            "metrics_url",
            "metric",
            "app_id",
            "per_replica",
            "min_replicas",
            "max_replicas",
            "interval",
            "scale_down_window",
            "max_step_up",
            "max_step_down",
            "kubeconfig",
            "host",
            "metrics_port",
        }
    ),
}
_SECTIONS: tuple[str, ...] = (*(cls.section for cls in _PROCESSES), *_OTHER_PROCESSES)
"""The YAML file's process sections (``queue_manager:``, ``worker:``, ...)."""


def _top_level_keys() -> frozenset[str]:
    """Every key the YAML file may hold at its top level.

    One file may serve every process, so a key is valid when it is a section or a setting of
    any process (its field name or ALPCRUN.CH alias), not only of the process reading it.
    """
    settings = {name for cls in _PROCESSES for name in cls.model_fields}
    settings.update(*_OTHER_PROCESSES.values())
    aliases = {alias for alias, name in _ALIASES.items() if name in settings}
    return frozenset({*_SECTIONS, *settings, *aliases})


def _check_top_level(raw: dict[Any, Any], path: str | Path) -> None:
    """Refuse a top-level key no process reads, naming it and the file."""
    valid = _top_level_keys()
    for key, value in raw.items():
        name = str(key)
        if name not in valid:
            close = difflib.get_close_matches(name, sorted(valid), n=3)
            hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
            raise ConfigError(
                f"config file {path}: unknown top-level key {name!r}{hint}; a top-level key is "
                f"a section ({', '.join(_SECTIONS)}) or a setting of any process "
                "(`alpcrun config show --process P` lists them)"
            )
        if isinstance(value, dict) and name not in _SECTIONS and name != "labels":
            raise ConfigError(
                f"config file {path}: top-level key {name!r} is a setting, not a section, "
                f"and cannot hold a mapping (sections: {', '.join(_SECTIONS)})"
            )


def read_yaml(path: str | Path | None, cls: type[_Base]) -> dict[str, Any]:
    """Read the YAML config file and return the values that concern ``cls``."""
    if path is None:
        path = os.environ.get("ALPCRUNCH_CONFIG") or None
    if path is None:
        return {}
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping")
    _check_top_level(raw, path)
    fields = set(cls.model_fields)
    data = {
        _ALIASES.get(str(k), str(k)): v
        for k, v in raw.items()
        if not isinstance(v, dict) or k == "labels"
    }
    data = {k: v for k, v in data.items() if k in fields}
    section = raw.get(cls.section) or {}
    if not isinstance(section, dict):
        raise ConfigError(f"config file {path}: section {cls.section!r} must be a mapping")
    data.update({_ALIASES.get(str(k), str(k)): v for k, v in section.items()})
    return data


def load_settings(cls: type[S], *, config_file: str | Path | None = None, **overrides: Any) -> S:
    """Build ``cls`` from flags (``overrides``, None values ignored), env, YAML and defaults."""
    token = _yaml_data.set(read_yaml(config_file, cls))
    try:
        return cls(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or cls.section
        raise ConfigError(f"invalid setting {where!r}: {first['msg']}") from exc
    finally:
        _yaml_data.reset(token)
