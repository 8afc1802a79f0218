"""What a photo's metadata becomes: read on decoding, kept or dropped on encoding (a privacy tool:
keep little, on purpose).

Reading: EXIF orientation (all 8 values) is applied to the pixels (:func:`orient`), and the
orientation stored in the EXIF block and the XMP packet is reset to 1, so no viewer rotates the
result twice. HEIF stores its rotation in the container, which libheif applies while decoding.

Writing: EXIF is rebuilt from an allow-list (:data:`EXIF_IFD0_KEPT`, :data:`EXIF_SUBIFD_KEPT`):
camera make and model, lens, exposure settings, dates and time zones, resolution, software,
artist and copyright. Everything else is dropped: the embedded thumbnail (an unprotected copy of
the photo), MakerNote (opaque, often holds serial numbers or previews), serial numbers, owner
name, unique image ids that link the copy to the original, free-text comments. The GPS IFD is
dropped unless ``keep_location=True``. XMP may hold location (and document ids), so it is
dropped unless ``keep_location=True``. PNG text chunks, IPTC and JFIF/DPI records are not
written. The ICC profile is always kept where it fits the output's channels.
"""

from __future__ import annotations

import logging
import re

import numpy as np
from PIL import ExifTags, Image, ImageFile

from lowkey.image_formats import DECODE_ERRORS

logger = logging.getLogger(__name__)

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


def exif_of(im: ImageFile.ImageFile, name: str) -> tuple[bytes | None, int]:
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
    except DECODE_ERRORS as exc:
        logger.warning("%s: unreadable EXIF dropped (%s); orientation taken as upright", name, exc)
        return None, 1
    if orientation not in range(1, 9):
        logger.warning("EXIF orientation %r is not 1..8; taken as upright", orientation)
        orientation = 1
    return block, orientation


_XMP_ORIENTATION = re.compile(rb'(tiff:Orientation\s*=\s*["\']|<tiff:Orientation>)\s*\d+')


def xmp_of(im: ImageFile.ImageFile) -> bytes | None:
    xmp = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp")
    if not xmp:
        return None
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    return _XMP_ORIENTATION.sub(rb"\g<1>1", bytes(xmp))


def orient(arr: np.ndarray, orientation: int) -> np.ndarray:
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


def icc_for(icc: bytes | None, *, gray: bool) -> bytes | None:
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


def output_exif(exif: bytes | None, keep_location: bool) -> bytes | None:
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
    except DECODE_ERRORS as exc:
        logger.warning("EXIF could not be rewritten and is dropped (%s)", exc)
        return None
