"""``python -m bench``: the side-by-side benchmark suite (see bench/README.md)."""

from __future__ import annotations

import sys

from bench.suite.orchestrate import main

if __name__ == "__main__":
    sys.exit(main())
