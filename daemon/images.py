"""Cheap checks of an uploaded image before it is queued: its type and its pixel count, read
from the header only (a decompression bomb is refused before anything is decoded). The full,
careful decode is the core's (:func:`lowkey.image_io.load_photo`, with the same limits)."""

from __future__ import annotations

import io
import warnings

from daemon.errors import ApiError

#: Content-Types the daemon accepts (the image's real type is read from its bytes).
ACCEPTED_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "image/heic",
                            "image/heif", "application/octet-stream"})


def sniff(data: bytes) -> str | None:
    """JPEG, PNG, WEBP or HEIF from the signature; None for anything else."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp" and data[8:12] in {b"heic", b"heix", b"heim", b"heis", b"mif1",
                                               b"msf1", b"hevc", b"hevx"}:
        return "HEIF"
    return None


def check_image(data: bytes, max_pixels: int) -> str:
    """The format of ``data``; raises :class:`ApiError` (``unsupported_media_type``,
    ``bad_image``, ``too_many_pixels``) when it is not an image to queue."""
    from PIL import Image

    if not data:
        raise ApiError("bad_image", "the body is empty: send the image's bytes")
    fmt = sniff(data)
    if fmt is None:
        raise ApiError("unsupported_media_type", "the body is not a JPEG, PNG, WebP or HEIF "
                                                 "image")
    if fmt == "HEIF":
        return fmt  # needs pillow-heif; the core checks its size while decoding
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[fmt]) as im:
                width, height = im.size
    except Image.DecompressionBombError:
        raise ApiError("too_many_pixels", "the image has too many pixels (decompression "
                                          "bomb guard)") from None
    except Exception:  # whatever a hostile header makes the parser raise
        raise ApiError("bad_image", f"the body is not a valid {fmt} image (corrupt "
                                    f"header)") from None
    if width * height > max_pixels:
        raise ApiError("too_many_pixels", f"the image is {width}x{height}, over the daemon's "
                                          f"limit of {max_pixels} pixels")
    return fmt
