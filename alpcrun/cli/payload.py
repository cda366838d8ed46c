"""``alpcrun payload``: list, inspect, fetch, store and delete payloads of the payload store.

Exit codes: 0 done; 1 the call failed; 2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from alpcrun.errors import AlpcrunError
from alpcrun.tls_flags import add_client_flags
from alpcrun.tls_flags import overrides as tls_overrides

T = TypeVar("T")
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2

_EPILOG = """\
examples:
  alpcrun payload ls                                 every payload, 100 a page
  alpcrun payload ls --session S --tier ram --json   one session's RAM payloads, as JSON
  alpcrun payload stat ID                            one payload: size, state, replicas
  alpcrun payload put in.npy --session S --keep      store a file; prints its reference
  alpcrun payload get ID --out out.bin               write a payload's bytes to a file
  alpcrun payload rm ID ID                           delete (leased ones go when read)
"""


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Add the ``payload`` command and its actions to the ``alpcrun`` parser."""
    cmd = sub.add_parser(
        "payload",
        help="list, inspect, get, put or delete payloads of the payload store",
        description="The payload store's catalog, hosted by the queue manager "
        "(docs/payloads.md). Without --session, every session's payloads are reached.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = cmd.add_subparsers(dest="payload_command", metavar="ACTION", required=True)

    def action(name: str, text: str) -> argparse.ArgumentParser:
        p = actions.add_parser(name, help=text, description=text)
        common(p)
        p.add_argument("--queue-manager", help="queue manager address (default localhost:1337)")
        add_client_flags(p)
        p.add_argument("--session", default="", metavar="SESSION", help="the owning session")
        return p

    ls = action("ls", "list payloads, in id order, one page at a time")
    ls.add_argument("--state", choices=("allocated", "committed", "deleting"), help="filter")
    ls.add_argument("--tier", choices=("ram", "disk"), help="only payloads with a replica there")
    ls.add_argument("--node", help="only payloads with a replica on this node")
    ls.add_argument("--limit", type=int, default=100, metavar="N", help="per page (default 100)")
    ls.add_argument("--after", default="", metavar="TOKEN", help="the next page's token")
    ls.add_argument("--json", action="store_true", help="print JSON")

    st = action("stat", "show one payload: size, state, version, metadata, replicas")
    st.add_argument("payload_id", metavar="ID")
    st.add_argument("--json", action="store_true", help="print JSON")

    get = action("get", "write a payload's bytes to a file (or standard output)")
    get.add_argument("payload_id", metavar="ID")
    get.add_argument("--out", metavar="FILE", help="where to write (default: standard output)")

    put = action("put", "store a file as a payload of a session; prints its reference")
    put.add_argument("file", metavar="FILE")
    put.add_argument("--tier", choices=("ram", "disk"), help="the tier (default: RAM, else disk)")
    put.add_argument("--keep", action="store_true", help="keep it after the session closes")
    put.add_argument("--ttl", type=float, default=0.0, metavar="SECONDS", help="delete after")

    rm = action("rm", "delete payloads (one still being read goes when its readers finish)")
    rm.add_argument("payload_ids", nargs="+", metavar="ID")


def run(args: argparse.Namespace) -> int:
    """Run ``alpcrun payload ACTION``; returns the exit code."""
    prog = f"alpcrun payload {args.payload_command}"
    if args.payload_command == "put" and not args.session:
        print(f"{prog}: error: a payload belongs to a session: pass --session", file=sys.stderr)
        return EXIT_USAGE
    if args.payload_command == "ls" and not 1 <= args.limit <= 1000:
        print(f"{prog}: error: --limit must be 1..1000", file=sys.stderr)
        return EXIT_USAGE
    actions: dict[str, Callable[[argparse.Namespace], int]] = {
        "ls": _ls,
        "stat": _stat,
        "get": _get,
        "put": _put,
        "rm": _rm,
    }
    try:
        return actions[args.payload_command](args)
    except (AlpcrunError, OSError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


def _call(args: argparse.Namespace, request: Callable[[Any, Any], Awaitable[T]]) -> T:
    """Run ``request(channel, store)`` against the queue manager and return its answer."""
    from alpcrun.config import ClientSettings, load_settings
    from alpcrun.logs import setup_logging
    from alpcrun.payload.store import PayloadStore, StoreOptions
    from alpcrun.proto.channel import open_channel
    from alpcrun.tls import client_tls

    settings = load_settings(
        ClientSettings,
        config_file=args.config,
        log_level=args.log_level,
        log_json=args.log_json,
        api_key=args.api_key,
        api_key_file=args.api_key_file,
        queue_manager=args.queue_manager,
        **tls_overrides(args),
    )
    setup_logging(settings.log_level, json_lines=settings.log_json)
    key = settings.api_key.get_secret_value() if settings.api_key else None

    async def main() -> T:
        channel = open_channel(
            settings.queue_manager,
            tls=client_tls(settings),
            max_message_bytes=settings.max_message_bytes,
        )
        options = StoreOptions(
            api_key=key, node=settings.node, agent_socket=settings.payload_socket
        )
        store = PayloadStore(channel, args.session, options)
        try:
            return await request(channel, store)
        finally:
            await store.close()
            await channel.close(None)

    return asyncio.run(main())


def _catalog(channel: Any, store: Any, name: str, request: Any) -> Awaitable[Any]:
    from alpcrun.payload.catalog_link import answer
    from alpcrun.proto import PayloadCatalogStub

    method = getattr(PayloadCatalogStub(channel), name)
    return answer(method(request, metadata=store.metadata, timeout=30))


def _info(info: Any) -> dict[str, Any]:
    from google.protobuf import json_format

    return json_format.MessageToDict(info, preserving_proto_field_name=True)


def _replicas(info: Any) -> str:
    from alpcrun.payload.convert import tier_from_proto

    out = []
    for r in info.replicas:
        tier = tier_from_proto(r.tier, "tier", optional=True)
        state = "ready" if r.ready else ("lost" if r.lost else "writing")
        out.append(f"{r.node}/{tier.value if tier else '?'}:{state}")
    return ",".join(out) or "-"


def _state(info: Any) -> str:
    from alpcrun.proto import PayloadState

    return PayloadState.Name(info.state).removeprefix("PAYLOAD_STATE_").lower()


def _ls(args: argparse.Namespace) -> int:
    from alpcrun.payload.convert import tier_to_proto
    from alpcrun.payload.types import PayloadState as State
    from alpcrun.payload.types import Tier
    from alpcrun.proto import ListPayloadsRequest, PayloadState

    request = ListPayloadsRequest(
        session_id=args.session, node=args.node or "", page_size=args.limit, page_token=args.after
    )
    if args.tier:
        request.tier = tier_to_proto(Tier(args.tier))
    if args.state:
        request.state = PayloadState.Value(f"PAYLOAD_STATE_{State(args.state).name}")
    page = _call(args, lambda ch, st: _catalog(ch, st, "ListPayloads", request))
    if args.json:
        out = {"payloads": [_info(p) for p in page.payloads], "next": page.next_page_token}
        print(json.dumps(out, indent=2))
        return EXIT_OK
    print(f"{'ID':26} {'SESSION':26} {'STATE':9} {'VERSION':>7} {'BYTES':>12}  REPLICAS")
    for p in page.payloads:
        print(
            f"{p.ref.payload_id:26} {p.session_id:26} {_state(p):9} {p.ref.version:>7} "
            f"{p.ref.size_bytes:>12}  {_replicas(p)}"
        )
    print(f"\n{len(page.payloads)} payloads", end="")
    print(f"; next page: --after {page.next_page_token}" if page.next_page_token else "")
    return EXIT_OK


def _stat(args: argparse.Namespace) -> int:
    from alpcrun.proto import StatPayloadRequest

    request = StatPayloadRequest(session_id=args.session, payload_id=args.payload_id)
    info = _call(args, lambda ch, st: _catalog(ch, st, "StatPayload", request))
    if args.json:
        print(json.dumps(_info(info), indent=2))
        return EXIT_OK
    rows = (
        ("payload", info.ref.payload_id),
        ("session", info.session_id),
        ("state", _state(info)),
        ("version", str(info.ref.version)),
        ("bytes", str(info.ref.size_bytes)),
        ("meta", ", ".join(f"{k}={v}" for k, v in sorted(info.meta.items())) or "-"),
        ("replicas", _replicas(info)),
        ("keep", "yes" if info.keep else "no"),
        ("ttl", f"{info.ttl_seconds:.0f}s" if info.ttl_seconds else "-"),
    )
    for name, value in rows:
        print(f"{name:9} {value}")
    return EXIT_OK


def _get(args: argparse.Namespace) -> int:
    from alpcrun.payload.store import PayloadStore
    from alpcrun.proto import PayloadIdsRequest

    async def fetch(channel: Any, store: Any) -> bytes:
        request = PayloadIdsRequest(session_id=args.session, payload_ids=[args.payload_id])
        (info,) = (await _catalog(channel, store, "Resolve", request)).payloads
        # agents serve a payload to its own session: read as the session that owns it
        owner = PayloadStore(channel, info.session_id, store.options)
        try:
            return bytes(await owner.get(info.ref))
        finally:
            await owner.close()

    data = _call(args, fetch)
    if args.out:
        Path(args.out).write_bytes(data)
        print(f"{len(data)} bytes written to {args.out}")
    else:
        sys.stdout.buffer.write(data)
    return EXIT_OK


def _put(args: argparse.Namespace) -> int:
    from alpcrun.payload.types import Tier

    data = Path(args.file).read_bytes()
    tier = Tier(args.tier) if args.tier else None
    ref = _call(args, lambda ch, st: st.put(data, tier=tier, ttl_s=args.ttl, keep=args.keep))
    print(f"{ref.payload_id} version {ref.version} ({ref.size_bytes} bytes)")
    return EXIT_OK


def _rm(args: argparse.Namespace) -> int:
    from alpcrun.proto import PayloadIdsRequest

    request = PayloadIdsRequest(session_id=args.session, payload_ids=args.payload_ids)
    done = _call(args, lambda ch, st: _catalog(ch, st, "Delete", request))
    print(f"deleted {done.deleted}; {done.deferred} still being read (they go when read)")
    return EXIT_OK
