"""Ctrl-C and SIGTERM that always stop long work.

Python raises ``KeyboardInterrupt`` wherever the main thread is when the signal
arrives. When that is inside a ``__del__``, a weakref or garbage-collector
callback, or a library's catch-all ``except``, the exception is printed as
"ignored" (or not at all) and the work goes on: a training run asked to stop
kept training. :func:`handling_signals` makes each signal both raise at once, as
before, and be remembered; loops call :func:`stop_if_asked` at every step, so a
stop swallowed on its way is raised there again.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator


class Terminated(BaseException):
    """SIGTERM, raised where the program is so that open files are closed as after Ctrl-C.

    Not a KeyboardInterrupt, which click turns into its own exit before the CLI's ``main`` sees it.
    """


_asked: dict[str, type[BaseException] | None] = {"stop": None}


def _on_sigint(signum, frame) -> None:
    _asked["stop"] = KeyboardInterrupt
    raise KeyboardInterrupt


def _on_sigterm(signum, frame) -> None:
    _asked["stop"] = Terminated
    raise Terminated()


@contextlib.contextmanager
def handling_signals() -> Iterator[None]:
    """Inside the block, SIGINT and SIGTERM raise at once and are remembered for :func:`stop_if_asked`; the
    handlers and the remembered stop from before it are back after it.

    Only in the main thread (elsewhere nothing changes). An ignored SIGINT, as in a job started in the
    background, stays ignored, as Python leaves it; SIGTERM is always handled (files closed, exit 143).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    asked_before, _asked["stop"] = _asked["stop"], None
    signal.signal(signal.SIGTERM, _on_sigterm)
    if before[signal.SIGINT] is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        for s, handler in before.items():
            if handler is not None:  # None: a handler installed outside Python, which cannot be put back
                signal.signal(s, handler)
        _asked["stop"] = asked_before


def stop_if_asked() -> None:
    """Raise ``KeyboardInterrupt`` (or :class:`Terminated`) again when one was asked for inside
    :func:`handling_signals`; nothing otherwise. Cheap: call it at every step of a long loop."""
    stop = _asked["stop"]
    if stop is not None:
        raise stop()
