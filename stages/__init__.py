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


def present_columns(columns, table, stage: str, without_s: str) -> list[str]:
    """``columns`` less ``s`` when the table has none (``bias.kind: none`` draws no s).

    Dropping ``s`` is said on stderr as ``STAGE: note: ...: WITHOUT_S``; other missing columns
    are left for the library to report.
    """
    columns = list(columns)
    if "s" in columns and "s" not in table.columns:
        columns.remove("s")
        print(f"{stage}: note: no injected bias s (bias.kind: none): {without_s}",
              file=sys.stderr)
    return columns
