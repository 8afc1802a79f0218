"""Decode untrusted bytes into a :class:`Photo`: upright RGB pixels and what is needed to write
them back faithfully.

Pillow only ever runs the decoder of the format :func:`~lowkey.image_formats.sniff_format`
identified, so none of its many other plugins sees hostile input. Refused with
:class:`~lowkey.errors.ImageError`: empty, truncated and corrupt files, files over
``max_bytes``, images over ``max_pixels`` or with a side over :data:`MAX_SIDE`, CMYK, animated
PNG/WebP and multi-image HEIF (more than one frame, as Pillow counts them). The pixels are decoded
in full (Pillow's ``LOAD_TRUNCATED_IMAGES`` is never set), so a truncated file fails here and
not later. A JPEG carrying extra MPF pictures (MPO: previews, depth maps) or an Ultra HDR gain
map is read as its primary picture; the extra pictures are never written back.

:attr:`Photo.pixels` is always ``(3, H, W)`` float32 RGB in [0, 1], upright
(:mod:`lowkey.image_metadata` applies the EXIF orientation). A grayscale photo is replicated into
3 equal channels. Alpha is kept apart, untouched. 16-bit PNGs keep 16 bits (read with pypng:
Pillow has no 16-bit colour modes). A single transparent colour (PNG ``tRNS``) becomes an alpha
channel, since the perturbation may move pixels onto or off the key colour.
"""

from __future__ import annotations

import io
import logging
import os
import stat
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import png
import torch
from PIL import Image, ImageFile

from lowkey.errors import ImageError, TooManyPixels
from lowkey.image_formats import DECODE_ERRORS, ensure_heif, sniff_format
from lowkey.image_metadata import exif_of, orient, xmp_of
from lowkey.pixels import samples_to_tensor

logger = logging.getLogger(__name__)

#: Default cap on the number of pixels of an input (width x height).
DEFAULT_MAX_PIXELS = 50_000_000
#: Default cap on the size of an input file, in bytes.
DEFAULT_MAX_BYTES = 100 * 1024 * 1024
#: No side of an input may exceed this many pixels, whatever ``max_pixels`` says.
MAX_SIDE = 20_000


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
    fmt = sniff_format(data, "the image")
    if fmt == "HEIF":
        ensure_heif("the image is a HEIF/HEIC image")
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
    fmt = sniff_format(data, name)
    if fmt == "HEIF":
        ensure_heif(f"{name} is a HEIF/HEIC image")
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
    exif, orientation = exif_of(im, name)
    xmp = xmp_of(im)
    icc = im.info.get("icc_profile") or None

    colour = orient(colour, orientation)
    if alpha is not None:
        alpha = np.ascontiguousarray(orient(alpha, orientation))

    pixels = samples_to_tensor(colour, bit_depth)

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
    except DECODE_ERRORS as exc:
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
    except DECODE_ERRORS as exc:
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
        except DECODE_ERRORS as exc:
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
