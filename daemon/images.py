"""Cheap checks of an uploaded image before it is queued: its type, its pixel count and its
channels, read from the header only (a decompression bomb is refused before anything is
decoded), by the core's :func:`lowkey.image_decode.probe_header`, the same checks the full decode
makes."""

from __future__ import annotations

from lowkey.errors import ImageError, TooManyPixels, UnsupportedImage
from lowkey.image_decode import ImageHeader, probe_header
from lowkey_daemon.errors import ApiError

#: Content-Types the daemon accepts (the image's real type is read from its bytes).
ACCEPTED_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "image/heic",
                            "image/heif", "application/octet-stream"})


def check_image(data: bytes, max_pixels: int) -> ImageHeader:
    """What the header of ``data`` declares (format, size, channels); raises :class:`ApiError`
    (``unsupported_media_type``, ``too_many_pixels``, ``bad_image``) when it is not an image to
    queue."""
    try:
        header = probe_header(data, max_pixels=max_pixels)
    except UnsupportedImage as exc:
        raise ApiError("unsupported_media_type", str(exc)) from None
    except TooManyPixels as exc:
        raise ApiError("too_many_pixels", str(exc)) from None
    except ImageError as exc:
        raise ApiError("bad_image", str(exc)) from None
    return header
