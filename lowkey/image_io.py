"""Decode photos into RGB tensors and encode protected pixels back, keeping what should be kept.

One pipeline for the CLI, the daemon and the evaluation: :func:`load_photo` reads untrusted bytes,
:func:`encode_photo` / :func:`save_photo` write the protected result.

Decoding
    The format is identified from the content, never from the file name: JPEG, PNG, WebP and HEIF
    (HEIC; needs the optional ``pillow-heif``, the ``heif`` extra). Pillow only ever runs the
    decoder of the format we identified, so none of its many other plugins sees hostile input.
    Everything else (GIF, TIFF, BMP, AVIF, ...) is refused with :class:`~lowkey.errors.ImageError`,
    as are empty, truncated and corrupt files, files over ``max_bytes``, images over ``max_pixels``
    or with a side over :data:`MAX_SIDE`, animated PNG/WebP and multi-image HEIF (more than one
    frame, as Pillow counts them). The pixels are decoded in full (Pillow's
    ``LOAD_TRUNCATED_IMAGES`` is never set), so a truncated file fails here and not later. A JPEG
    carrying extra MPF pictures (MPO: previews, depth maps) or an Ultra HDR gain map is read as its
    primary picture; the extra pictures are never written back.

    EXIF orientation (all 8 values) is applied to the pixels, and the orientation stored in
    :attr:`Photo.exif` and :attr:`Photo.xmp` is reset to 1, so no viewer rotates the result twice.
    HEIF stores its rotation in the container, which libheif applies while decoding.

Pixels
    :attr:`Photo.pixels` is always ``(3, H, W)`` float32 RGB in [0, 1], upright. A grayscale photo is
    replicated into 3 equal channels and written back as one channel, the **mean** of the three
    (the orthogonal projection onto the gray axis, so the perturbation loses as little as possible).
    Alpha is kept apart, untouched, and written back bit-exact (except into HEIF, whose alpha plane
    is compressed lossily by libheif). Floats are quantised by rounding; 16-bit PNGs keep 16 bits
    (read and written with pypng: Pillow has no 16-bit colour modes).

    Palette (and 1-bit) PNGs are written as RGB/RGBA (or L) PNG: re-quantising to a palette would
    destroy the perturbation. A single transparent colour (PNG ``tRNS``) becomes an alpha channel,
    since the perturbation may move pixels onto or off the key colour.

Encoding
    Same format and size as the input unless asked: JPEG quality 95 with 4:4:4 chroma; PNG lossless
    (pypng writes 16-bit rows unfiltered: bigger files than libpng's); WebP lossless when the input
    was lossless (a ``VP8L`` bitstream, or a PNG), else quality 95; HEIF quality 95 with libheif's
    default 4:2:0 chroma (what Apple decoders expect). The ICC profile is always kept.

Metadata (a privacy tool: keep little, on purpose)
    EXIF is rebuilt from an allow-list (:data:`EXIF_IFD0_KEPT`, :data:`EXIF_SUBIFD_KEPT`): camera
    make and model, lens, exposure settings, dates and time zones, resolution, software, artist and
    copyright. Everything else is dropped: the embedded thumbnail (an unprotected copy of the photo),
    MakerNote (opaque, often holds serial numbers or previews), serial numbers, owner name, unique
    image ids that link the copy to the original, free-text comments. The GPS IFD is dropped unless
    ``keep_location=True``. XMP may hold location (and document ids), so it is dropped unless
    ``keep_location=True``. PNG text chunks, IPTC and JFIF/DPI records are not written.

Saving
    :func:`save_photo` encodes in memory first (a bad photo never leaves a file behind), refuses to
    write over the source file, and refuses an existing destination unless ``overwrite=True``. The
    file is written to a temporary file in the destination folder and moved into place atomically.
"""

from __future__ import annotations

import io
import logging
import os
import re
import stat
import struct
import threading
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import png
import torch
from PIL import ExifTags, Image, ImageFile, PngImagePlugin

from lowkey.errors import ImageError, TooManyPixels, UnsupportedImage
from lowkey.files import write_atomic

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_QUALITY",
    "FORMATS",
    "IMAGE_SUFFIXES",
    "MEDIA_TYPES",
    "MAX_SIDE",
    "ImageHeader",
    "OUTPUT_SUFFIX",
    "Photo",
    "encode_photo",
    "is_photo_file",
    "check_quality",
    "load_photo",
    "normalise_format",
    "output_path_for",
    "probe_header",
    "probe_image",
    "save_photo",
    "to_uint8_hwc",
]

#: Formats LowKey reads and writes (Pillow's names).
FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "HEIF")
#: Default cap on the number of pixels of an input (width x height).
DEFAULT_MAX_PIXELS = 50_000_000
#: Default cap on the size of an input file, in bytes.
DEFAULT_MAX_BYTES = 100 * 1024 * 1024
#: No side of an input may exceed this many pixels, whatever ``max_pixels`` says.
MAX_SIDE = 20_000
#: Default quality of the lossy encoders (JPEG, lossy WebP, HEIF).
DEFAULT_QUALITY = 95
#: The MIME type of each of :data:`FORMATS`, as LowKey writes it.
MEDIA_TYPES: dict[str, str] = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp",
                               "HEIF": "image/heif"}

#: File extensions per format; the first is the one :func:`output_path_for` picks.
EXTENSIONS: dict[str, tuple[str, ...]] = {
    "JPEG": (".jpg", ".jpeg", ".jpe", ".jfif"),
    "PNG": (".png",),
    "WEBP": (".webp",),
    "HEIF": (".heic", ".heif", ".hif"),
}
#: Every extension of :data:`EXTENSIONS`, lower case: the files a folder scan takes for photos
#: (:func:`is_photo_file`). Only the scan goes by name; the format is always read from content.
IMAGE_SUFFIXES: frozenset[str] = frozenset(ext for exts in EXTENSIONS.values() for ext in exts)
#: What :func:`output_path_for` appends to a photo's stem by default (``a.jpg`` -> ``a_lowkey.jpg``).
OUTPUT_SUFFIX = "_lowkey"

_FORMAT_ALIASES = {"JPG": "JPEG", "HEIC": "HEIF", "WEBP": "WEBP", "JPEG": "JPEG", "PNG": "PNG"}

_T = ExifTags.Base
#: EXIF tags of IFD0 written back (the Exif and GPS IFD pointers are handled apart).
EXIF_IFD0_KEPT: frozenset[int] = frozenset(
    {
        _T.Make,
        _T.Model,
        _T.Orientation,  # always 1 by then
        _T.XResolution,
        _T.YResolution,
        _T.ResolutionUnit,
        _T.Software,
        _T.DateTime,
        _T.Artist,
        _T.Copyright,
    }
)
#: EXIF tags of the Exif sub-IFD written back: exposure, lens, dates and time zones, colour space.
EXIF_SUBIFD_KEPT: frozenset[int] = frozenset(
    {
        _T.ExposureTime,
        _T.FNumber,
        _T.ExposureProgram,
        _T.ISOSpeedRatings,
        _T.SensitivityType,
        _T.RecommendedExposureIndex,
        _T.ExifVersion,
        _T.DateTimeOriginal,
        _T.DateTimeDigitized,
        _T.OffsetTime,
        _T.OffsetTimeOriginal,
        _T.OffsetTimeDigitized,
        _T.SubsecTime,
        _T.SubsecTimeOriginal,
        _T.SubsecTimeDigitized,
        _T.ShutterSpeedValue,
        _T.ApertureValue,
        _T.BrightnessValue,
        _T.ExposureBiasValue,
        _T.MaxApertureValue,
        _T.MeteringMode,
        _T.LightSource,
        _T.Flash,
        _T.FocalLength,
        _T.ColorSpace,
        _T.ExposureMode,
        _T.WhiteBalance,
        _T.DigitalZoomRatio,
        _T.FocalLengthIn35mmFilm,
        _T.SceneCaptureType,
        _T.Contrast,
        _T.Saturation,
        _T.Sharpness,
        _T.LensSpecification,
        _T.LensMake,
        _T.LensModel,
    }
)

# What a hostile file can make a Pillow decoder raise (UnidentifiedImageError is an OSError).
_DECODE_ERRORS = (
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


@dataclass(frozen=True, eq=False)
class Photo:
    """A decoded photo: upright pixels plus what is needed to write it back faithfully.

    Attributes:
        pixels: ``(3, H, W)`` float32 on the CPU, RGB order, values in [0, 1], upright (EXIF
            orientation applied). A grayscale photo is replicated into 3 equal channels.
        alpha: ``(H, W)`` alpha channel, upright and untouched (uint8, or uint16 when
            ``bit_depth == 16``), or None.
        format: what the bytes really are: ``"JPEG"``, ``"PNG"``, ``"WEBP"`` or ``"HEIF"``.
        mode: the source's pixel layout as a Pillow mode before any conversion: ``"RGB"``,
            ``"L"``, ``"RGBA"``, ``"LA"``, ``"P"``, ``"1"``, ``"I;16"``... A 16-bit colour PNG
            (which Pillow can only decode at 8 bits) reports ``"RGB"``, ``"RGBA"`` or ``"LA"``
            with ``bit_depth == 16``.
        grayscale: the photo has one colour channel (written back as one channel where the format
            allows; WebP has no grayscale).
        bit_depth: precision of the pixels, 8 or 16 (16 only for 16-bit PNGs).
        icc_profile: the embedded ICC profile, or None.
        exif: the EXIF block as in a JPEG APP1 segment (``b"Exif\\0\\0"`` then a TIFF structure),
            rewritten by Pillow with its orientation reset to 1: IFD0 and the Exif and GPS IFDs
            are all still here (the thumbnail IFD1 is not), :func:`encode_photo` decides what is
            written. None when absent, empty or unreadable.
        xmp: the XMP packet (UTF-8 bytes) with any ``tiff:Orientation`` reset to 1, or None.
        lossless: the source was losslessly coded (PNG, or WebP with a ``VP8L`` bitstream).
        source: the file it was read from, or None when decoded from bytes.
    """

    pixels: torch.Tensor = field(repr=False)
    alpha: np.ndarray | None = field(repr=False)
    format: str
    mode: str
    grayscale: bool
    bit_depth: int
    icc_profile: bytes | None = field(repr=False)
    exif: bytes | None = field(repr=False)
    xmp: bytes | None = field(repr=False)
    lossless: bool
    source: Path | None

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` in pixels, upright."""
        return int(self.pixels.shape[2]), int(self.pixels.shape[1])


# --------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class ImageHeader:
    """What an image's header declares, before anything is decoded: its format, its stored
    width and height, and its channels (Pillow's bands: 1 gray, 3 colour, 4 with alpha...)."""

    format: str
    width: int
    height: int
    channels: int


def probe_header(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageHeader:
    """The :class:`ImageHeader` of ``data``, from its signature and header only: nothing is
    decoded, so a service can refuse a bad upload, or budget its decoding, cheaply before
    queueing it. The checks are :func:`load_photo`'s.

    Raises:
        UnsupportedImage: not a format LowKey reads.
        TooManyPixels: more than ``max_pixels`` pixels, or a side over the limit.
        ImageError: empty, a corrupt header, or HEIF without pillow-heif.
    """
    if not data:
        raise ImageError("the image is empty (0 bytes)")
    fmt = _sniff_format(data, "the image")
    if fmt == "HEIF":
        _ensure_heif("the image is a HEIF/HEIC image")
    with _open(data, fmt, "the image", max_pixels) as im:
        return ImageHeader(fmt, im.width, im.height, len(im.getbands()))


def probe_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[str, tuple[int, int]]:
    """The format (``"JPEG"``, ``"PNG"``, ``"WEBP"``, ``"HEIF"``) and (width, height) of
    ``data`` (:func:`probe_header`, which says what it raises)."""
    header = probe_header(data, max_pixels=max_pixels)
    return header.format, (header.width, header.height)


def load_photo(
    source: Path | str | bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Photo:
    """Decode a photo from a file or from bytes, identifying the format by content.

    Args:
        source: a path (``Path`` or ``str``) or the file's bytes (``bytes``, ``bytearray``,
            ``memoryview``).
        max_pixels: refuse images with more pixels (width x height) than this. Pillow's own
            decompression-bomb error (at ``2 * PIL.Image.MAX_IMAGE_PIXELS``, about 179 MP by
            default) still applies above it.
        max_bytes: refuse inputs larger than this many bytes.

    Returns:
        The decoded :class:`Photo`, pixels upright.

    Raises:
        ImageError: the input is missing, empty, too large, not an image, in a format LowKey does
            not accept, animated, truncated or corrupt (the message says which).
    """
    if max_pixels < 1 or max_bytes < 1:
        raise ValueError("max_pixels and max_bytes must be positive")
    data, path = _read_source(source, max_bytes)
    name = str(path) if path is not None else "the image"
    fmt = _sniff_format(data, name)
    if fmt == "HEIF":
        _ensure_heif(f"{name} is a HEIF/HEIC image")
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        logger.warning(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES was set elsewhere: truncated images may load"
        )

    im = _open(data, fmt, name, max_pixels)
    frames = getattr(im, "n_frames", 1)
    if frames > 1 and im.format != "MPO":
        kind = {"PNG": "an animated PNG (APNG)", "WEBP": "an animated WebP"}.get(
            fmt, f"a {fmt} file with {frames} images"
        )
        raise ImageError(f"{name} is {kind}; LowKey protects still, single images only")
    if im.format == "MPO":
        logger.info(
            "%s: keeping the primary picture of %d (MPO); the others are dropped", name, frames
        )

    colour, alpha, grayscale, bit_depth, mode = _decode_pixels(im, data, fmt, name, max_pixels)

    # Metadata (after load: a PNG's eXIf chunk may follow its pixel data).
    exif, orientation = _exif_of(im, name)
    xmp = _xmp_of(im)
    icc = im.info.get("icc_profile") or None

    colour = _orient(colour, orientation)
    if alpha is not None:
        alpha = np.ascontiguousarray(_orient(alpha, orientation))

    pixels = _to_tensor(colour, bit_depth)

    photo = Photo(
        pixels=pixels,
        alpha=alpha,
        format=fmt,
        mode=mode,
        grayscale=grayscale,
        bit_depth=bit_depth,
        icc_profile=icc,
        exif=exif,
        xmp=xmp,
        lossless=fmt == "PNG" or (fmt == "WEBP" and _webp_is_lossless(data)),
        source=path,
    )
    logger.debug(
        "decoded %s: %s %dx%d mode=%s bits=%d alpha=%s orientation=%d",
        name,
        fmt,
        *photo.size,
        photo.mode,
        bit_depth,
        alpha is not None,
        orientation,
    )
    return photo


def _to_tensor(colour: np.ndarray, bit_depth: int) -> torch.Tensor:
    """``(H, W, 1 or 3)`` uint8/uint16 -> ``(3, H, W)`` float32 in [0, 1] (gray replicated)."""
    # Reorder while the samples are small integers: a strided copy of floats is 4x the memory.
    chw = colour.transpose(2, 0, 1).copy()  # C order, and writable (Pillow's buffer is not)
    if bit_depth == 16:
        chw = chw.astype(np.int32)  # torch has few uint16 operations
    pixels = torch.from_numpy(chw).to(torch.float32).div_(65535.0 if bit_depth == 16 else 255.0)
    if pixels.shape[0] == 1:
        pixels = pixels.expand(3, -1, -1).contiguous()
    return pixels


def _read_source(source: Path | str | bytes, max_bytes: int) -> tuple[bytes, Path | None]:
    """The input's bytes (at most ``max_bytes``) and its path, if it is a file."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if len(data) > max_bytes:
            raise ImageError(f"the image is {len(data)} bytes, over the limit of {max_bytes}")
        if not data:
            raise ImageError("the image is empty (0 bytes)")
        return data, None
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be a path or bytes, not {type(source).__name__}")
    path = Path(source)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise ImageError(f"{path} is not a regular file")
        if info.st_size > max_bytes:
            raise ImageError(f"{path} is {info.st_size} bytes, over the limit of {max_bytes}")
        with path.open("rb") as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except PermissionError:
        raise ImageError(f"{path}: permission denied") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if len(data) > max_bytes:
        raise ImageError(f"{path} is over the limit of {max_bytes} bytes")
    if not data:
        raise ImageError(f"{path} is empty (0 bytes)")
    return data, path


def _sniff_format(data: bytes, name: str) -> str:
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


def _ensure_heif(why: str) -> None:
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


def _open(data: bytes, fmt: str, name: str, max_pixels: int) -> ImageFile.ImageFile:
    """Parse the header with the one Pillow plugin of ``fmt`` and check the size (no pixels yet)."""
    try:
        with warnings.catch_warnings():
            # Our own cap below is the one that counts; Pillow's hard error is a backstop.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=[fmt])
    except Image.DecompressionBombError as exc:
        raise TooManyPixels(f"{name} is too large, refused as a decompression bomb ({exc})"
                            ) from None
    except _DECODE_ERRORS as exc:
        raise ImageError(f"{name} is not a valid {fmt} file (corrupt header: {exc})") from None
    _check_size(im.size, name, max_pixels)
    return im


def _check_size(size: tuple[int, int], name: str, max_pixels: int) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise ImageError(f"{name} has an empty size ({width}x{height})")
    if width > MAX_SIDE or height > MAX_SIDE:
        raise TooManyPixels(f"{name} is {width}x{height}: a side is over {MAX_SIDE} pixels")
    if width * height > max_pixels:
        raise TooManyPixels(
            f"{name} is {width}x{height} = {width * height} pixels, over the limit of "
            f"{max_pixels} (possible decompression bomb)"
        )


def _load(im: ImageFile.ImageFile, fmt: str, name: str) -> None:
    """Decode all pixels now, turning truncation and corruption into ImageError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im.load()
    except Image.DecompressionBombError as exc:
        raise TooManyPixels(f"{name} is too large, refused as a decompression bomb ({exc})"
                            ) from None
    except _DECODE_ERRORS as exc:
        reason = "truncated" if "truncated" in str(exc) else "corrupt"
        raise ImageError(f"{name}: the {fmt} data is {reason} ({exc})") from None


def _decode_pixels(
    im: ImageFile.ImageFile, data: bytes, fmt: str, name: str, max_pixels: int
) -> tuple[np.ndarray, np.ndarray | None, bool, int, str]:
    """Colour ``(H, W, 1 or 3)``, alpha ``(H, W)`` or None, grayscale, bit depth, source mode."""
    _load(im, fmt, name)  # also for 16-bit PNGs: checks the stream, and reads chunks after IDAT
    _check_size(im.size, name, max_pixels)  # a decoder may correct the header's size
    if fmt == "PNG":  # IHDR must come first (Pillow does not insist); byte 24 is its bit depth
        if data[12:16] != b"IHDR":
            raise ImageError(f"{name} is not a valid PNG file (IHDR is not the first chunk)")
        if data[24] == 16:
            return _decode_png16(data, name)
    mode = im.mode
    if mode == "CMYK":
        raise ImageError(f"{name} is a CMYK {fmt}; LowKey needs an RGB or grayscale photo")
    has_key = "transparency" in im.info
    target = {
        "1": "LA" if has_key else "L",
        "L": "LA" if has_key else "L",
        "LA": "LA",
        "La": "LA",
        "P": "RGBA" if has_key else "RGB",
        "PA": "RGBA",
        "RGB": "RGBA" if has_key else "RGB",
        "RGBA": "RGBA",
        "RGBa": "RGBA",
    }.get(mode)
    if target is None:
        raise ImageError(f"{name}: unsupported {fmt} pixel layout {mode!r}")
    if target != mode:
        try:
            im = im.convert(target)
        except _DECODE_ERRORS as exc:
            raise ImageError(f"{name}: cannot convert {mode} pixels ({exc})") from None
    arr = np.asarray(im)
    if arr.ndim == 2:
        arr = arr[..., None]
    grayscale = target in ("L", "LA")
    n = 1 if grayscale else 3
    alpha = np.ascontiguousarray(arr[..., n]) if target.endswith("A") else None
    return arr[..., :n], alpha, grayscale, 8, mode


def _decode_png16(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray | None, bool, int, str]:
    """:func:`_decode_pixels` for a 16-bit PNG, with pypng (Pillow keeps 8 bits of colour).

    The source mode is Pillow's name for the layout (``"I;16"`` for gray), except that 16-bit
    gray+alpha, which Pillow calls ``"RGBA"``, is ``"LA"``.
    """
    try:
        width, height, rows, info = png.Reader(bytes=data).read()
        values = np.vstack(list(rows)).reshape(height, width, info["planes"])
    except (png.Error, zlib.error, ValueError) as exc:
        raise ImageError(f"{name}: the 16-bit PNG data is corrupt ({exc})") from None
    grayscale, has_alpha = info["greyscale"], info["alpha"]
    n = 1 if grayscale else 3
    alpha = np.ascontiguousarray(values[..., n]) if has_alpha else None
    if "transparent" in info:  # a transparent colour (tRNS) becomes an alpha channel
        alpha = np.where((values == info["transparent"]).all(-1), 0, 65535).astype(np.uint16)
    mode = ("LA" if has_alpha else "I;16") if grayscale else ("RGBA" if has_alpha else "RGB")
    return values[..., :n], alpha, grayscale, 16, mode


def _webp_is_lossless(data: bytes) -> bool:
    """True when the image bitstream is VP8L (lossless), False for VP8 (lossy, maybe with ALPH).

    Pillow does not say, so walk the RIFF chunks (fourcc, little-endian size, even padding).
    """
    pos = 12
    while pos + 8 <= len(data):
        fourcc, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if fourcc in (b"VP8 ", b"VP8L"):
            return fourcc == b"VP8L"
        pos += 8 + size + (size & 1)
    return False


def _exif_of(im: ImageFile.ImageFile, name: str) -> tuple[bytes | None, int]:
    """The EXIF block with orientation reset to 1, and the orientation it had (1 when none)."""
    raw = im.info.get("exif")
    try:
        if raw and isinstance(raw, bytes):
            exif = Image.Exif()
            exif.load(raw)
        elif "Raw profile type exif" in im.info:  # ImageMagick-style PNG text chunk
            exif = im.getexif()
        else:
            return None, 1
        orientation = exif.get(_T.Orientation, 1)
        if _T.Orientation in exif:
            exif[_T.Orientation] = 1
        block = exif.tobytes() if len(exif) else None  # the Exif and GPS IFDs are written too
    except _DECODE_ERRORS as exc:
        logger.warning("%s: unreadable EXIF dropped (%s); orientation taken as upright", name, exc)
        return None, 1
    if orientation not in range(1, 9):
        logger.warning("EXIF orientation %r is not 1..8; taken as upright", orientation)
        orientation = 1
    return block, orientation


_XMP_ORIENTATION = re.compile(rb'(tiff:Orientation\s*=\s*["\']|<tiff:Orientation>)\s*\d+')


def _xmp_of(im: ImageFile.ImageFile) -> bytes | None:
    xmp = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp")
    if not xmp:
        return None
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    return _XMP_ORIENTATION.sub(rb"\g<1>1", bytes(xmp))


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation to an ``(H, W, ...)`` array: the stored image becomes upright.

    1 upright, 2 mirrored, 3 rotated 180, 4 flipped, 5 transposed, 6 needs 90 degrees clockwise,
    7 transversed, 8 needs 90 degrees counter-clockwise (as Pillow's ``ImageOps.exif_transpose``).
    """
    if orientation == 2:
        return arr[:, ::-1]
    if orientation == 3:
        return arr[::-1, ::-1]
    if orientation == 4:
        return arr[::-1]
    if orientation == 5:
        return arr.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(arr, -1)
    if orientation == 7:
        return arr[::-1, ::-1].swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(arr, 1)
    return arr


# --------------------------------------------------------------------------------------------
# Writing


def encode_photo(
    photo: Photo,
    pixels: torch.Tensor,
    *,
    keep_location: bool = False,
    quality: int = DEFAULT_QUALITY,
    format: str | None = None,
) -> bytes:
    """Encode new pixels for ``photo`` into the bytes of an image file.

    Args:
        photo: the photo the pixels belong to (size, alpha, grayscale, bit depth, metadata).
        pixels: ``(3, H, W)`` float RGB in [0, 1], same size as ``photo``, on any device
            (values outside [0, 1] are clamped; NaN is refused). Grayscale photos are written as
            the mean of the three channels.
        keep_location: keep the EXIF GPS IFD and the XMP packet (both dropped by default).
        quality: 1..100, for JPEG, lossy WebP and HEIF.
        format: ``"JPEG"``/``"JPG"``, ``"PNG"``, ``"WEBP"`` or ``"HEIF"``/``"HEIC"``; default: the
            photo's own format. A photo with alpha cannot be written as JPEG.

    Returns:
        The encoded file.

    Raises:
        ValueError: bad arguments (pixel shape, size or NaN, quality, format, alpha into JPEG).
        ImageError: HEIF output without pillow-heif.
    """
    fmt = normalise_format(format) if format is not None else photo.format
    check_quality(quality)
    if fmt == "JPEG" and photo.alpha is not None:
        raise ValueError("this photo has an alpha channel, which JPEG cannot hold: use PNG or WEBP")
    if fmt == "HEIF":
        _ensure_heif("writing HEIF")

    bits = 16 if fmt == "PNG" and photo.bit_depth == 16 else 8
    values = _quantise(pixels, photo, bits, photo.grayscale)  # (H, W, C)
    if photo.grayscale and fmt == "WEBP":  # WebP has no grayscale: three equal channels
        values = np.repeat(values, 3, axis=-1)
    alpha = _alpha_at(photo.alpha, bits)
    if alpha is not None:
        values = np.concatenate([values, alpha[..., None]], axis=-1)

    icc = _icc_for(photo.icc_profile, gray=values.shape[-1] == 1)
    exif = _output_exif(photo.exif, keep_location)
    xmp = photo.xmp if keep_location else None
    if xmp is not None and fmt == "JPEG" and len(xmp) > 65502:
        logger.warning("XMP packet too large for one JPEG segment: dropped")
        xmp = None

    options: dict[str, object] = {}
    if icc:
        options["icc_profile"] = icc
    if exif:
        options["exif"] = exif
    if fmt == "JPEG":
        options.update(quality=quality, subsampling=0, optimize=True)
        if xmp:
            options["xmp"] = xmp
    elif fmt == "PNG":
        if xmp:
            try:
                info = PngImagePlugin.PngInfo()
                info.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8"))
                options["pnginfo"] = info
            except UnicodeDecodeError:
                logger.warning("XMP packet is not UTF-8: dropped")
        if bits == 16:
            return _png16_bytes(values, options)
    elif fmt == "WEBP":
        if photo.lossless:
            options.update(lossless=True, exact=True)
        else:
            options.update(quality=quality, alpha_quality=100)
        if xmp:
            options["xmp"] = xmp
    elif fmt == "HEIF":
        options["quality"] = quality
        if xmp:
            options["xmp"] = xmp
    image = Image.fromarray(values[..., 0] if values.shape[-1] == 1 else values)
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def save_photo(
    photo: Photo,
    pixels: torch.Tensor,
    dest: Path,
    *,
    keep_location: bool = False,
    quality: int = DEFAULT_QUALITY,
    format: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Encode ``pixels`` (see :func:`encode_photo`) and write them to ``dest`` atomically.

    The file is encoded in memory first, then written to a temporary file in ``dest``'s folder and
    moved into place, so ``dest`` is either absent or complete.

    Args:
        overwrite: replace an existing ``dest``. The photo's own source file is never replaced.

    Returns:
        ``dest``.

    Raises:
        ImageError: ``dest`` is the photo's source file, or exists and ``overwrite`` is False.
        ValueError: see :func:`encode_photo`.
        OSError: the file system refused the write (missing folder, permissions, full disk).
    """
    fmt = normalise_format(format) if format is not None else photo.format
    data = encode_photo(photo, pixels, keep_location=keep_location, quality=quality, format=fmt)
    return write_encoded(data, dest, source=photo.source, overwrite=overwrite)


def write_encoded(data: bytes, dest: Path, *, source: Path | None = None,
                  overwrite: bool = False) -> Path:
    """Write bytes from :func:`encode_photo` to ``dest`` atomically.

    Refuses the photo's own ``source`` file, a folder, and (unless ``overwrite``) an existing
    file, with :class:`ImageError`; ``dest`` is either absent or complete afterwards.
    """
    dest = Path(dest)
    if source is not None and _same_file(dest, Path(source)):
        raise ImageError(f"refusing to write over the original photo {source}")
    if dest.is_dir():
        raise ImageError(f"{dest} is a folder, not a file name")
    if dest.exists() and not overwrite:
        raise ImageError(f"{dest} already exists (pass overwrite=True to replace it)")
    _atomic_write(dest, data, overwrite=overwrite)
    logger.info("saved %s (%d bytes)", dest, len(data))
    return dest


def report_path_for(output: Path) -> Path:
    """The JSON report beside an output: ``photo_lowkey.jpg`` -> ``photo_lowkey.jpg.json``
    (named after the whole output name, so that ``photo.jpg`` and ``photo.png`` in one folder
    keep apart; a no-face photo's report names the output it would have had)."""
    return output.with_name(output.name + ".json")


def output_path_for(
    source: Path,
    out_dir: Path | None = None,
    suffix: str = OUTPUT_SUFFIX,
    *,
    format: str | None = None,
) -> Path:
    """Where to write the protected copy of ``source``: ``photo.jpg`` -> ``photo_lowkey.jpg``.

    The extension comes from the real format (read from the file's first bytes, or ``format`` when
    the output format is chosen explicitly): a WebP named ``img.jpg`` gives ``img_lowkey.webp``.
    The source's own extension is kept when it fits the format (``.JPG``, ``.jpeg``, ``.heif``).

    Raises:
        ImageError: the source cannot be read or is not a supported image.
        ValueError: the result would be the source itself (empty suffix, same folder and extension).
    """
    source = Path(source)
    if format is not None:
        fmt = normalise_format(format)
    else:
        try:
            with source.open("rb") as f:
                head = f.read(4096)
        except OSError as exc:
            raise ImageError(f"{source}: cannot read it ({exc.strerror or exc})") from None
        fmt = _sniff_format(head, str(source))
    ext = source.suffix if source.suffix.lower() in EXTENSIONS[fmt] else EXTENSIONS[fmt][0]
    folder = Path(out_dir) if out_dir is not None else source.parent
    dest = folder / f"{source.stem}{suffix}{ext}"
    if _same_file(dest, source):
        raise ValueError(
            f"the output path {dest} would be the source itself: use a suffix or out_dir"
        )
    return dest


def is_photo_file(path: Path) -> bool:
    """Whether a folder scan takes ``path`` as a photo to work on: an existing file (or a link to
    one) whose extension, in any case, is one of :data:`IMAGE_SUFFIXES`, that is not hidden (a
    name starting with ``.``, e.g. macOS's ``._IMG_0001.JPG``) and is not a LowKey output (a stem
    ending in :data:`OUTPUT_SUFFIX`, as :func:`output_path_for` names them). Reads no content."""
    path = Path(path)
    return (path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
            and not path.stem.endswith(OUTPUT_SUFFIX) and path.is_file())


def to_uint8_hwc(pixels: torch.Tensor) -> np.ndarray:
    """8-bit samples of ``pixels``, as Pillow, dlib and OpenCV-style code read them.

    ``pixels``: ``(3, H, W)`` float RGB in [0, 1], on any device, with or without gradient.
    Returns ``(H, W, 3)`` uint8 RGB (same channel order), C-contiguous, on the CPU: each value
    clamped to [0, 1], times 255, rounded half to even; the same levels :func:`encode_photo`
    writes into an 8-bit file. The rounding runs on ``pixels``' device, so only bytes travel.
    """
    if pixels.ndim != 3 or pixels.shape[0] != 3:
        raise ValueError(f"pixels must be (3, H, W), got {tuple(pixels.shape)}")
    if not pixels.is_floating_point():
        raise ValueError(f"pixels must be floats in [0, 1], not {pixels.dtype}")
    levels = _round_to_levels(pixels.detach(), 8)
    return np.ascontiguousarray(levels.permute(1, 2, 0).cpu().numpy())


def _round_to_levels(x: torch.Tensor, bits: int) -> torch.Tensor:
    """``(C, H, W)`` floats -> integer levels of the same shape and device: clamped to [0, 1]
    (+-inf to 1 and 0, NaN stays NaN), times 255 or 65535, rounded half to even; uint8 for 8
    bits, int32 for 16 (torch has few uint16 operations). ``x`` is not modified."""
    top = 65535 if bits == 16 else 255
    levels = x.clamp(0.0, 1.0).mul_(top).round_()  # clamp made a copy: in place from here
    return levels.to(torch.int32 if bits == 16 else torch.uint8)


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


def _quantise(pixels: torch.Tensor, photo: Photo, bits: int, gray: bool) -> np.ndarray:
    """``(3, H, W)`` floats in [0, 1] -> ``(H, W, C)`` uint8/uint16 by rounding; C = 1 if gray."""
    if not isinstance(pixels, torch.Tensor):
        raise ValueError(f"pixels must be a torch.Tensor, not {type(pixels).__name__}")
    width, height = photo.size
    if tuple(pixels.shape) != (3, height, width):
        raise ValueError(
            f"pixels must have shape (3, {height}, {width}), not {tuple(pixels.shape)}"
        )
    if not pixels.is_floating_point():
        raise ValueError(f"pixels must be floats in [0, 1], not {pixels.dtype}")
    x = pixels.detach().to(device="cpu", dtype=torch.float32)
    if gray:
        x = x.mean(dim=0, keepdim=True)
    # The sum is NaN for any NaN, and for +inf and -inf together (which clamp to 1 and 0).
    if torch.isnan(x.sum()) and torch.isnan(x).any():
        raise ValueError("pixels contain NaN")
    q = _round_to_levels(x, bits).numpy()
    return np.ascontiguousarray(q.transpose(1, 2, 0)).astype(np.uint16 if bits == 16 else np.uint8)


def _alpha_at(alpha: np.ndarray | None, bits: int) -> np.ndarray | None:
    """The alpha channel at the output's bit depth (unchanged when it already matches)."""
    if alpha is None:
        return None
    if bits == 16:
        return alpha.astype(np.uint16) * 257 if alpha.dtype == np.uint8 else alpha
    if alpha.dtype == np.uint16:
        return np.round(alpha / 257.0).astype(np.uint8)
    return alpha


def _icc_for(icc: bytes | None, *, gray: bool) -> bytes | None:
    """The ICC profile if its colour space fits the output (a gray profile on RGB WebP does not)."""
    if not icc or len(icc) < 20:
        return None
    space = icc[16:20]
    if space not in (b"GRAY", b"RGB "):
        return icc  # unusual but not ours to judge
    if (space == b"GRAY") != gray:
        logger.warning(
            "the %s ICC profile does not fit the output channels: dropped", space.decode()
        )
        return None
    return icc


def _output_exif(exif: bytes | None, keep_location: bool) -> bytes | None:
    """The allow-listed EXIF to write (see the module docstring), or None."""
    if not exif:
        return None
    try:
        src = Image.Exif()
        src.load(exif)
        out = Image.Exif()
        out.endian = src.endian
        for tag in EXIF_IFD0_KEPT:
            if tag in src:
                out[tag] = src[tag]
        if _T.Orientation in out:
            out[_T.Orientation] = 1
        sub = {t: v for t, v in src.get_ifd(ExifTags.IFD.Exif).items() if t in EXIF_SUBIFD_KEPT}
        if sub:
            out[ExifTags.IFD.Exif] = sub
        if keep_location:
            gps = src.get_ifd(ExifTags.IFD.GPSInfo)
            if gps:
                out[ExifTags.IFD.GPSInfo] = dict(gps)
        if not len(out):
            return None
        return out.tobytes()
    except _DECODE_ERRORS as exc:
        logger.warning("EXIF could not be rewritten and is dropped (%s)", exc)
        return None


def _png16_bytes(values: np.ndarray, options: dict[str, object]) -> bytes:
    """A 16-bit PNG of ``(H, W, C)`` uint16 values (C: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA).

    pypng writes the pixels but no ICC profile, EXIF or XMP; Pillow writes those chunks (from the
    same save ``options`` as an 8-bit PNG) into a 1x1 PNG, and they are copied in after IHDR.
    """
    height, width, channels = values.shape
    writer = png.Writer(width, height, greyscale=channels < 3, alpha=channels % 2 == 0, bitdepth=16)
    pixels = io.BytesIO()
    writer.write(pixels, values.reshape(height, width * channels))
    metadata = io.BytesIO()
    Image.new("L", (1, 1)).save(metadata, format="PNG", **options)
    extra = [
        chunk
        for chunk in png.Reader(bytes=metadata.getvalue()).chunks()
        if chunk[0] not in (b"IHDR", b"IDAT", b"IEND")
    ]
    ihdr, *rest = png.Reader(bytes=pixels.getvalue()).chunks()
    out = io.BytesIO()
    png.write_chunks(out, [ihdr, *extra, *rest])
    return out.getvalue()


def _same_file(a: Path, b: Path) -> bool:
    """True when the paths name the same file (same inode, or the same absolute path)."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


def _atomic_write(dest: Path, data: bytes, *, overwrite: bool) -> None:
    try:
        write_atomic(dest, data, overwrite=overwrite)
    except FileExistsError:
        raise ImageError(f"{dest} already exists (pass overwrite=True to replace it)") from None
