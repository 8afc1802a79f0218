"""The image formats LowKey reads and writes: their names, file extensions and MIME types, how
to tell them apart by content, and the settings of their encoders.

The format is identified from the content, never from the file name (:func:`sniff_format`):
JPEG, PNG, WebP and HEIF (HEIC; needs the optional ``pillow-heif``, the ``heif`` extra,
registered on first use by :func:`ensure_heif`). Everything else (GIF, TIFF, BMP, AVIF, ...)
is refused with :class:`~lowkey.errors.UnsupportedImage`, named where it is well known.
"""

from __future__ import annotations

import struct
import threading
import zlib

import png

from lowkey.errors import ImageError, UnsupportedImage

#: Formats LowKey reads and writes (Pillow's names).
FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "HEIF")
#: Default quality of the lossy encoders (JPEG, lossy WebP, HEIF).
DEFAULT_QUALITY = 95
#: The MIME type of each of :data:`FORMATS`, as LowKey writes it.
MEDIA_TYPES: dict[str, str] = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp",
                               "HEIF": "image/heif"}

#: File extensions per format; the first is the one
#: :func:`lowkey.output_files.output_path_for` picks.
EXTENSIONS: dict[str, tuple[str, ...]] = {
    "JPEG": (".jpg", ".jpeg", ".jpe", ".jfif"),
    "PNG": (".png",),
    "WEBP": (".webp",),
    "HEIF": (".heic", ".heif", ".hif"),
}
#: Every extension of :data:`EXTENSIONS`, lower case: the files a folder scan takes for photos
#: (:func:`lowkey.output_files.is_photo_file`). Only the scan goes by name; the format is
#: always read from content.
IMAGE_SUFFIXES: frozenset[str] = frozenset(ext for exts in EXTENSIONS.values() for ext in exts)

_FORMAT_ALIASES = {"JPG": "JPEG", "HEIC": "HEIF", "WEBP": "WEBP", "JPEG": "JPEG", "PNG": "PNG"}

#: What a hostile file can make a Pillow decoder raise (UnidentifiedImageError is an OSError).
DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    IndexError,
    KeyError,
    TypeError,
    zlib.error,
    RuntimeError,
)

# ISO base media file brands (the ``ftyp`` box) of HEVC-coded HEIF, and of AVIF.
_HEVC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"})
_HEIF_BRANDS = _HEVC_BRANDS | {b"mif1", b"msf1", b"mif2"}
_AVIF_BRANDS = frozenset({b"avif", b"avis"})

_heif_lock = threading.Lock()
_heif_registered = False


def normalise_format(format: str) -> str:
    """The name in :data:`FORMATS` of ``format`` (any case, a leading dot, ``JPG`` and ``HEIC``
    too); ValueError for a format LowKey does not write."""
    fmt = _FORMAT_ALIASES.get(str(format).strip().upper().lstrip("."))
    if fmt is None:
        raise ValueError(f"unsupported output format {format!r}; use one of {', '.join(FORMATS)}")
    return fmt


def check_quality(quality: int) -> int:
    """``quality`` of the lossy encoders, checked: an integer in 1..100 (ValueError otherwise)."""
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ValueError(f"quality must be an integer in 1..100, not {quality!r}")
    return quality


def sniff_format(data: bytes, name: str) -> str:
    """Which of :data:`FORMATS` the bytes are, from their signature; ImageError otherwise."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(png.signature):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    what = None
    if data[4:8] == b"ftyp":
        box = int.from_bytes(data[0:4], "big")
        end = min(len(data), box if 16 <= box <= 4096 else 64)
        brands = {data[8:12]} | {data[i : i + 4] for i in range(16, end - 3, 4)}
        if brands & _AVIF_BRANDS and not brands & _HEVC_BRANDS:
            what = "an AVIF"
        elif brands & _HEIF_BRANDS:
            return "HEIF"
        else:
            what = "an ISO media file (a video?)"
    what = what or _unsupported_kind(data)
    accepted = "LowKey reads JPEG, PNG, WebP and HEIF/HEIC photos"
    if what is None:
        raise UnsupportedImage(f"{name} is not an image LowKey can read ({accepted})")
    raise UnsupportedImage(f"{name} is {what}, which is not supported; {accepted}")


def _unsupported_kind(data: bytes) -> str | None:
    """A name for a few well-known formats we refuse, for a clearer message."""
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "a GIF"
    bmp_header_sizes = {12, 40, 52, 56, 64, 108, 124}
    if data[:2] == b"BM" and int.from_bytes(data[14:18], "little") in bmp_header_sizes:
        return "a BMP"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "a TIFF (or a TIFF-based camera raw file)"
    if data[:4] == b"8BPS":
        return "a Photoshop document"
    if data[:4] == b"\x00\x00\x01\x00":
        return "an ICO icon"
    if data[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n" or data[:4] == b"\xff\x4f\xff\x51":
        return "a JPEG 2000"
    if data[:2] == b"\xff\x0a" or data[:12] == b"\x00\x00\x00\x0cJXL \r\n\x87\n":
        return "a JPEG XL"
    if data[:4] == b"qoif":
        return "a QOI image"
    if data[:4] == b"RIFF":
        return "a RIFF file that is not WebP"
    if data[:5] == b"%PDF-":
        return "a PDF"
    head = data[:256].lstrip().lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in data[:4096].lower()):
        return "an SVG (vector) image"
    return None


def ensure_heif(why: str) -> None:
    """Register pillow-heif's Pillow plugin on first use; a clear ImageError when absent."""
    global _heif_registered
    with _heif_lock:
        if _heif_registered:
            return
        try:
            import pillow_heif
        except ImportError:
            raise ImageError(
                f"{why}: that needs the optional pillow-heif package; install the heif extra "
                "(pip install 'lowkey[heif]')"
            ) from None
        pillow_heif.register_heif_opener()
        _heif_registered = True
