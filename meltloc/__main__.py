"""The ``meltloc`` command (and ``python -m meltloc``).

The command line (:mod:`meltloc.cli`) takes about 0.2 s to import; a Ctrl-C in
that time ends the program as a Ctrl-C later would (``interrupted``, exit
130), not with a traceback. Nothing has been read or written by then.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Console-script entry point: import the command line, then run it (:func:`meltloc.cli.main`)."""
    try:
        from meltloc.cli import main as run
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    run()


if __name__ == "__main__":
    main()
