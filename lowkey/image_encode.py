"""Encode protected pixels into the bytes of an image file, keeping what should be kept.

Same format and size as the input unless asked: JPEG quality 95 with 4:4:4 chroma; PNG lossless
(pypng writes 16-bit rows unfiltered: bigger files than libpng's); WebP lossless when the input
was lossless (a ``VP8L`` bitstream, or a PNG), else quality 95; HEIF quality 95 with libheif's
default 4:2:0 chroma (what Apple decoders expect). A grayscale photo is written back as one
channel, the **mean** of the three (the orthogonal projection onto the gray axis, so the
perturbation loses as little as possible). Alpha is written back bit-exact (except into HEIF,
whose alpha plane libheif compresses lossily). Palette (and 1-bit) PNGs are written as RGB/RGBA
(or L) PNG: re-quantising to a palette would destroy the perturbation. Metadata:
:mod:`lowkey.image_metadata`.
"""

from __future__ import annotations

import io
import logging

import numpy as np
import png
import torch
from PIL import Image, PngImagePlugin

from lowkey.image_decode import Photo
from lowkey.image_formats import DEFAULT_QUALITY, check_quality, ensure_heif, normalise_format
from lowkey.image_metadata import icc_for, output_exif
from lowkey.pixels import round_to_levels

logger = logging.getLogger(__name__)

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
        ensure_heif("writing HEIF")

    bits = 16 if fmt == "PNG" and photo.bit_depth == 16 else 8
    values = _quantise(pixels, photo, bits, photo.grayscale)  # (H, W, C)
    if photo.grayscale and fmt == "WEBP":  # WebP has no grayscale: three equal channels
        values = np.repeat(values, 3, axis=-1)
    alpha = _alpha_at(photo.alpha, bits)
    if alpha is not None:
        values = np.concatenate([values, alpha[..., None]], axis=-1)

    icc = icc_for(photo.icc_profile, gray=values.shape[-1] == 1)
    exif = output_exif(photo.exif, keep_location)
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
    q = round_to_levels(x, bits).numpy()
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
