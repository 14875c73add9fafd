"""Python warnings said as a command's own lines: ``NAME: warning: MESSAGE``.

Shared by the DVC stages (:func:`stages.run`, the train stage) and the ``biaslab`` commands
(``audit``, the audit project's steps): one place says how a warning reads on the terminal.
"""

import contextlib
import sys
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def warning_lines(name: str) -> Iterator[None]:
    """In the block, each warning is printed on stderr as ``NAME: warning: MESSAGE``, once.

    Python's own form, ``FILE:LINE: UserWarning: MESSAGE`` and the source line under it, is
    about the library's code, not the user's data, and repeats a message raised from several
    places (a metric undefined for a group, for each method evaluated). A warning is printed
    when it is raised (a training run's may come hours before the end); the filters still
    decide which are (by default, not DeprecationWarnings).
    """
    said: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None):
        if str(message) not in said:
            said.add(str(message))
            print(f"{name}: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield
