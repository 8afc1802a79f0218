"""Exceptions raised by the LowKey core. Each carries a message meant for the user."""


class LowKeyError(Exception):
    """Base class of every error the core raises on purpose."""


class ImageError(LowKeyError):
    """The input is not an image we can read safely (not an image, truncated, too big, ...)."""


class UnsupportedImage(ImageError):
    """The bytes are not JPEG, PNG, WebP or HEIF (another format, or not an image at all)."""


class TooManyPixels(ImageError):
    """The image's header declares more pixels (or a longer side) than allowed: refused before
    anything is decoded (decompression bombs)."""


class WeightsError(LowKeyError):
    """Model weights are missing, fail their hash check, or cannot be fetched or converted."""


class NoFaceError(LowKeyError):
    """No face was found in a photo where one was required."""
