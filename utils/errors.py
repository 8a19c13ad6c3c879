"""Errors meant for people, and the wrapper every entry script runs its `main` in.

A `UserError` carries one sentence that names the thing that is wrong (a path, a config key, a
weight file) and, where there is one, what to do about it. Entry scripts print that sentence and
exit with status 2 instead of showing a traceback from deep inside Paddle.
"""
import sys
import warnings


class UserError(Exception):
    """A problem with the user's input (paths, files, config), explained in one line."""


def run_cli(main, argv=None):
    """Run `main(argv)`; turn a `UserError` into one line on stderr and exit status 2."""
    # Warnings meant for users read as one line too, without the source line they were raised from.
    warnings.formatwarning = lambda message, category, *args, **kwargs: f"warning: {message}\n"
    try:
        status = main(argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(status or 0)
