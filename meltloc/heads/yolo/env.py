"""Run ultralytics offline, with its settings and fonts in a private folder.

ultralytics reads ``YOLO_OFFLINE`` and ``YOLO_CONFIG_DIR`` when it is first
imported, creates ``settings.json`` there, and looks for ``Arial.ttf`` in it
(downloading the font when it is missing, on every ``train()``). meltloc
never needs the network, so before the first import it:

* sets ``YOLO_OFFLINE=1`` (no online checks, no analytics events);
* points ``YOLO_CONFIG_DIR`` to a private folder (``$XDG_CACHE_HOME/meltloc``,
  default ``~/.cache/meltloc``; a temporary folder if that is not writable)
  unless the user set one;
* copies matplotlib's DejaVuSans.ttf there as ``Ultralytics/Arial.ttf`` and
  ``Ultralytics/Arial.Unicode.ttf``;
* turns ultralytics' settings ``sync`` (analytics) and its logging
  integrations (MLflow, Comet, ClearML, DVC, W&B, ...) off.

Nothing happens at import time of meltloc: call :func:`import_ultralytics`
where ultralytics is needed.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

FONTS = ("Arial.ttf", "Arial.Unicode.ttf")
# ultralytics' logging integrations (each on when its package is installed); meltloc keeps its own records.
INTEGRATIONS = ("clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb")


def private_config_dir() -> Path:
    """The folder given to ``YOLO_CONFIG_DIR`` when the user has not set one."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "meltloc"
    try:
        base.mkdir(parents=True, exist_ok=True)
        if os.access(base, os.W_OK):
            return base
    except OSError:
        pass
    fallback = Path(tempfile.gettempdir()) / f"meltloc-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


def install_fonts(folder: Path) -> None:
    """Put a TrueType font under the names ultralytics looks for, so it never downloads them."""
    folder.mkdir(parents=True, exist_ok=True)
    missing = [name for name in FONTS if not (folder / name).is_file()]
    if not missing:
        return
    import matplotlib

    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in missing:
        tmp = folder / f".{name}.tmp{os.getpid()}"
        shutil.copyfile(source, tmp)
        os.replace(tmp, folder / name)


def prepare_environment() -> Path:
    """Set the offline environment for ultralytics; return its settings folder (``.../Ultralytics``).

    Safe to call many times. When ultralytics was already imported (by the
    user's own code), its settings folder is kept and only the fonts and the
    offline flag are added.
    """
    os.environ["YOLO_OFFLINE"] = "1"
    if "ultralytics" in sys.modules:
        from ultralytics.utils import USER_CONFIG_DIR

        folder = Path(USER_CONFIG_DIR)
    else:
        if not os.environ.get("YOLO_CONFIG_DIR"):
            os.environ["YOLO_CONFIG_DIR"] = str(private_config_dir())
        folder = Path(os.environ["YOLO_CONFIG_DIR"]).expanduser() / "Ultralytics"
    install_fonts(folder)
    return folder


def import_ultralytics():
    """``import ultralytics`` offline (see the module docstring); returns the module."""
    prepare_environment()
    import ultralytics
    from ultralytics.utils import SETTINGS

    off = {k: False for k in ("sync", *INTEGRATIONS) if SETTINGS.get(k, False)}
    if off:
        SETTINGS.update(off)
    return ultralytics
