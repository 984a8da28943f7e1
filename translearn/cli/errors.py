"""The argparse tools' error handling: a user error is one line on stderr and exit status 2; a closed
stdout (``translearn-compare --json | head``) ends the tool quietly. ``HYDRA_FULL_ERROR=1`` shows the
traceback instead."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable

from translearn.errors import USER_ERROR_EXIT, debug_requested, is_user_error, one_line


def report_user_errors(prog: str) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Decorate a CLI ``main(argv) -> int`` so that user errors print ``<prog>: error: <message>`` and return 2."""
    def wrap(main: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(main)
        def run(*args: object, **kwargs: object) -> int:
            try:
                code = main(*args, **kwargs)
                sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
                return code
            except BrokenPipeError:
                # The reader went away (| head): stop writing, and keep Python from complaining at exit.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return 0
            except Exception as err:
                if not is_user_error(err) or debug_requested():
                    raise
                print(f"{prog}: error: {one_line(err)}", file=sys.stderr)
                return USER_ERROR_EXIT
        return run
    return wrap
