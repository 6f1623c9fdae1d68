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
    from meltloc.names import natural_key

    return sorted((p for p in Path(folder).iterdir() if p.is_file() and is_image(p)), key=lambda p: natural_key(p.name))


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
TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
JPEG_SIGNATURE = b"\xff\xd8\xff"
#: The largest image read, in pixels: a full-scale EastGRIP section is about 31,000 x 1,700 px (53 Mpx).
MAX_PIXELS = 400_000_000


def _tiff_size(f, head: bytes) -> tuple[int, int] | None:
    """(width, height) from a classic TIFF's first IFD, or None when not found there."""
    if head[2:4] not in (b"*\x00", b"\x00*"):
        return None  # BigTIFF: left to the decoder
    order = "<" if head[:2] == b"II" else ">"
    (ifd,) = struct.unpack(order + "I", head[4:8])
    f.seek(ifd)
    raw = f.read(2)
    if len(raw) < 2:
        return None
    (count,) = struct.unpack(order + "H", raw)
    entries = f.read(12 * min(count, 4096))
    size = {}
    for k in range(len(entries) // 12):
        tag, kind, _n = struct.unpack(order + "HHI", entries[12 * k:12 * k + 8])
        if tag in (256, 257):
            value = entries[12 * k + 8:12 * k + 12]
            size[tag] = struct.unpack(order + ("H" if kind == 3 else "I"), value[:2] if kind == 3 else value)[0]
    return (size[256], size[257]) if len(size) == 2 else None


def check_image_file(path: Path, max_pixels: int = MAX_PIXELS) -> None:
    """Check an image file's header before it is read whole.

    Refuses (ImageReadError) a file whose first bytes are no BMP, PNG, TIFF or
    JPEG signature (a large junk file named ``.tif`` is refused after reading
    32 bytes), a truncated or 0 x 0 PNG or BMP (libpng prints its own lines on
    stderr for such files; checked here, they become one reported problem),
    and an image larger than ``max_pixels``. OS errors (no permission, I/O)
    become ImageReadError too.
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(32)
            tail = b""
            if head.startswith(PNG_SIGNATURE):
                f.seek(max(0, size - 64))
                tail = f.read(64)
            dims = _tiff_size(f, head) if head.startswith(TIFF_SIGNATURES) else None
    except OSError as exc:
        raise ImageReadError(f"cannot read: {exc.strerror or exc}; skipped", path) from exc
    except struct.error:
        dims = None
    if head.startswith(PNG_SIGNATURE):
        if len(head) < 24 or head[12:16] != b"IHDR":
            raise ImageReadError("not a readable PNG (its IHDR header is missing)", path)
        dims = struct.unpack(">II", head[16:24])
        if dims[0] == 0 or dims[1] == 0:
            raise ImageReadError(f"the image is {dims[0]} x {dims[1]} px", path)
        if b"IEND" not in tail:
            raise ImageReadError("truncated PNG (the file ends before its IEND chunk)", path)
    elif head.startswith(b"BM"):
        if len(head) < 26:
            raise ImageReadError("truncated BMP (the file ends inside its header)", path)
        width, height = struct.unpack("<ii", head[18:26])
        if width == 0 or height == 0:
            raise ImageReadError(f"the image is {width} x {abs(height)} px", path)
        dims = (abs(width), abs(height))
    elif not head.startswith(TIFF_SIGNATURES + (JPEG_SIGNATURE,)):
        raise ImageReadError(f"not a BMP, PNG, TIFF or JPEG file (its first bytes are {head[:8]!r})", path)
    if dims is not None and dims[0] * dims[1] > max_pixels:
        raise ImageReadError(f"the image is {dims[0]:,} x {dims[1]:,} px = {dims[0] * dims[1]:,} px, more than the "
                             f"{max_pixels:,} px meltloc reads (a full-scale section is about 53 million)", path)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as a 2-D grey array, keeping its bit depth (uint8 or uint16).

    Colour images are converted to grey once, in the decoder. No other copy
    of the full image is made. The header is checked first
    (:func:`check_image_file`).

    Raises:
        ImageReadError: missing, empty, unreadable (permission, I/O), corrupt, truncated, 0x0 or oversized files.
    """
    path = Path(path)
    try:
        if not path.is_file():
            raise ImageReadError("image not found", path)
        if path.stat().st_size == 0:
            raise ImageReadError("image file is empty", path)
    except OSError as exc:
        raise ImageReadError(f"cannot read: {exc.strerror or exc}", path) from exc
    check_image_file(path)
    # cv2.imread cannot take non-ASCII paths on every platform; decode from bytes instead.
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise ImageReadError(f"cannot read: {exc.strerror or exc}", path) from exc
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


def data_bits(image: np.ndarray) -> int:
    """Bits of data an image holds: 8 for uint8; for uint16 the smallest of 8, 10, 12, 14 and 16 that holds its
    brightest pixel (cameras write 8-, 10-, 12- or 14-bit data into 16-bit files)."""
    if image.dtype != np.uint16:
        return 8
    peak = int(image.max()) if image.size else 0
    for bits in (8, 10, 12, 14):
        if peak < (1 << bits):
            return bits
    return 16


def to_8bit_scale(image: np.ndarray) -> float:
    """The divisor that brings an image's values to 0-255, as :func:`to_uint8` does: 1 for 8-bit data, 2 ** (bits - 8)
    for 10-, 12- and 14-bit data, 257 for 16-bit data (:func:`data_bits`)."""
    bits = data_bits(image)
    return 257.0 if bits == 16 else float(1 << (bits - 8))


def to_uint8(image: np.ndarray, divisor: float | None = None) -> np.ndarray:
    """8-bit version of an image: uint8 as is; uint16 divided by ``divisor``, by default :func:`to_8bit_scale` of
    the image itself (its data depth, :func:`data_bits`); a crop passes its whole image's divisor to keep its depth.
    The division is an integer one (a divisor of 2.5 divides by 2), and a divisor too small for the data clips at 255.

    A 16-bit file holding 8-, 10-, 12-, 14- or 16-bit data (shifted by 0, 2, 4
    or 6 bits, or divided by 257) gives the 8-bit original back.
    """
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        if divisor is None:
            divisor = to_8bit_scale(image)
        if divisor < 1:
            raise ValueError(f"8-bit divisor must be at least 1, got {divisor}")
        shift = int(divisor).bit_length() - 1
        if divisor == 1 << shift:
            scaled = image >> shift
        else:
            scaled = image // np.uint16(divisor)
        return np.minimum(scaled, 255).astype(np.uint8)
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
