"""Reading and writing section images (BMP, PNG, TIFF, JPEG; 8 or 16 bit; grey or colour)."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

from meltloc.atomic import atomic_path
from meltloc.errors import ImageReadError

IMAGE_SUFFIXES = (".bmp", ".png", ".tif", ".tiff", ".jpg", ".jpeg")


def is_image(path: str | Path) -> bool:
    """True for a file name with a supported image suffix."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def list_images(folder: str | Path) -> list[Path]:
    """The supported images in a folder (not recursive), in natural order of their names."""
    import re

    def natural(p: Path):
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]

    return sorted((p for p in Path(folder).iterdir() if p.is_file() and is_image(p)), key=natural)


def _quiet_decode(data: np.ndarray, flags: int):
    """cv2.imdecode without OpenCV's own log lines on stderr (a corrupt file becomes one reported warning)."""
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is None:
        return cv2.imdecode(data, flags)
    level = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    try:
        return cv2.imdecode(data, flags)
    finally:
        logging.setLogLevel(level)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_header(data: np.ndarray, path: Path) -> None:
    """Refuse PNG and BMP files that are truncated or 0 px wide or high before the decoder sees them.

    libpng prints its own lines on stderr for such files; checked here, they
    become one reported problem like any other unreadable image.
    """
    head = data[:32].tobytes()
    if head.startswith(PNG_SIGNATURE):
        if len(head) < 24 or head[12:16] != b"IHDR":
            raise ImageReadError("not a readable PNG (its IHDR header is missing)", path)
        width, height = struct.unpack(">II", head[16:24])
        if width == 0 or height == 0:
            raise ImageReadError(f"the image is {width} x {height} px", path)
        if b"IEND" not in data[-64:].tobytes():
            raise ImageReadError("truncated PNG (the file ends before its IEND chunk)", path)
    elif head.startswith(b"BM") and len(head) >= 26:
        width, height = struct.unpack("<ii", head[18:26])
        if width == 0 or height == 0:
            raise ImageReadError(f"the image is {width} x {abs(height)} px", path)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as a 2-D grey array, keeping its bit depth (uint8 or uint16).

    Colour images are converted to grey once, in the decoder. No other copy
    of the full image is made.

    Raises:
        ImageReadError: missing, empty, corrupt, truncated or 0x0 files.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError("image not found", path)
    if path.stat().st_size == 0:
        raise ImageReadError("image file is empty", path)
    # cv2.imread cannot take non-ASCII paths on every platform; decode from bytes instead.
    data = np.fromfile(str(path), dtype=np.uint8)
    _check_header(data, path)
    flags = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_GRAYSCALE
    try:
        image = _quiet_decode(data, flags)
    except cv2.error as exc:
        raise ImageReadError(f"cannot decode: {exc}", path) from exc
    del data
    if image is None:
        raise ImageReadError("not a readable image (corrupt, truncated or unsupported format)", path)
    if image.ndim != 2 or image.size == 0:
        raise ImageReadError(f"unexpected image shape {image.shape}", path)
    if image.dtype not in (np.uint8, np.uint16):
        if np.issubdtype(image.dtype, np.floating):
            image = np.clip(image, 0, 1) * 255 if image.max() <= 1 else np.clip(image, 0, 255)
        image = image.astype(np.uint8)
    return image


def to_uint8(image: np.ndarray) -> np.ndarray:
    """8-bit version of an image: uint8 as is; uint16 by its container depth.

    16-bit files holding 16-bit data are divided by 257; files holding 12-bit
    (max <= 4095) or 8-bit data (max <= 255) in a 16-bit container by 16 or 1.
    """
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        peak = int(image.max())
        if peak > 4095:
            return (image // 257).astype(np.uint8)
        if peak > 255:
            return (image >> 4).astype(np.uint8)
        return image.astype(np.uint8)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_image(path: str | Path, image: np.ndarray) -> None:
    """Write an image atomically; the format follows the suffix."""
    path = Path(path)
    suffix = path.suffix.lower()
    params = [cv2.IMWRITE_PNG_COMPRESSION, 3] if suffix == ".png" else []
    ok, buf = cv2.imencode(suffix, image, params)
    if not ok:
        raise ImageReadError(f"cannot encode image as {suffix}", path)
    with atomic_path(path) as tmp:
        buf.tofile(str(tmp))
