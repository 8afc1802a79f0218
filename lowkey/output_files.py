"""Where protected photos go: output names beside or away from their sources, the JSON report
beside an output, which files a folder scan takes for photos, and writing.

:func:`save_photo` encodes in memory first (a bad photo never leaves a file behind), refuses to
write over the source file, and refuses an existing destination unless ``overwrite=True``. The
file is written to a temporary file in the destination folder and moved into place atomically.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from lowkey.errors import ImageError
from lowkey.files import write_atomic
from lowkey.image_decode import Photo
from lowkey.image_encode import encode_photo
from lowkey.image_formats import (
    DEFAULT_QUALITY,
    EXTENSIONS,
    IMAGE_SUFFIXES,
    normalise_format,
    sniff_format,
)

logger = logging.getLogger(__name__)

#: What :func:`output_path_for` appends to a photo's stem by default (``a.jpg`` -> ``a_lowkey.jpg``).
OUTPUT_SUFFIX = "_lowkey"


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
        fmt = sniff_format(head, str(source))
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
