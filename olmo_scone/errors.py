"""User-facing errors and the one place that turns them into a clean exit.

Anything a user can cause (a missing file, a bad config key, a corpus with no text)
raises :class:`SconeError` with a message that names the problem and, where there is
one, the fix. Entry points wrap ``main`` in :func:`run_cli`, which prints that message
on one line and exits non-zero, instead of a traceback from deep inside a library.
"""

from __future__ import annotations

import sys
from typing import Callable, NoReturn, Optional, Sequence


class SconeError(Exception):
    """An error caused by the user's input, with a message meant to be read by them."""


def fail(message: str) -> NoReturn:
    raise SconeError(message)


def run_cli(main: Callable[[Optional[Sequence[str]]], int | None], argv: Optional[Sequence[str]] = None) -> NoReturn:
    """Run ``main(argv)`` and exit: 0 on success, 2 on a :class:`SconeError`, 130 on Ctrl-C."""
    try:
        code = main(argv)
    except SconeError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(int(code or 0))
