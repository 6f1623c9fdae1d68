"""Start the review app with uvicorn, and the shipped sample's detections for ``meltloc review`` alone."""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import socket
import threading
import webbrowser
from pathlib import Path
from typing import Callable

from meltloc.review.store import ReviewError
from meltloc.review.tiles import default_cache_root

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def is_loopback(host: str) -> bool:
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_port(host: str, port: int) -> None:
    """Raise a one-line error now when the port is taken, rather than a traceback from uvicorn later."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ReviewError(f"port {port} on {host} is in use (another 'meltloc review'?): "
                                  "give another --port") from exc
            raise ReviewError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc


def serve(app, host: str = "127.0.0.1", port: int = 8765, open_browser: bool = True,
          on_ready: Callable[[str], None] | None = None) -> None:
    """Run the app until Ctrl-C; opens the page in the browser once the server listens."""
    import uvicorn

    check_port(host, port)
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)

    def announce() -> None:
        while not server.started and not server.should_exit:
            threading.Event().wait(0.05)
        if server.started:
            if on_ready is not None:
                on_ready(url)
            if open_browser:
                webbrowser.open(url)

    threading.Thread(target=announce, daemon=True).start()
    server.run()


def sample_detections(images: Path, sections: Path, weights: Path, cache: Path | None = None) -> Path:
    """Detections of the shipped weights on the shipped sample, made once into the cache (never into the sample).

    The file is keyed by a hash of the weights, so retrained weights at the same
    path get fresh detections (and a fresh decisions file beside them).
    """
    digest = hashlib.sha1(Path(weights).read_bytes()).hexdigest()[:12]
    folder = (cache or default_cache_root()) / "sample" / digest
    out = folder / "detections.csv"
    if out.is_file():
        return out
    from meltloc.detect import detect_images
    from meltloc.heads import load_detector
    from meltloc.manifest import read_manifest

    folder.mkdir(parents=True, exist_ok=True)
    detector = load_detector(weights, "cpu")
    detect_images([images], detector, out, read_manifest(sections), show_progress=False, threads=1)
    return out
