"""``python -m workers_sdk MODULE:CLASS``: run a worker (see :mod:`workers_sdk.cli`)."""

from __future__ import annotations

from workers_sdk.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
