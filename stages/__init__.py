"""Thin DVC stage modules: read params and inputs, call biaslab, write outputs atomically."""

import sys
from collections.abc import Callable


def run(main: Callable[[], None], name: str) -> None:
    """Run a stage's ``main``; a bad input or param ends it with one clear line, not a traceback.

    Unexpected errors (bugs) keep their traceback.
    """
    try:
        main()
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        sys.exit(1)
