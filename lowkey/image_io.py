"""Re-exports under the old name ``lowkey.image_io``, for the callers that still import it (the
CLI, the daemon, the evaluation, bench scripts and their tests). New code imports each name from
the module that holds it:

- :mod:`lowkey.image_formats`: the formats LowKey reads and writes, told apart by content; their
  extensions, MIME types and encoder settings;
- :mod:`lowkey.image_decode`: untrusted bytes to a :class:`~lowkey.image_decode.Photo`;
- :mod:`lowkey.image_encode`: protected pixels back to the bytes of a file;
- :mod:`lowkey.image_metadata`: orientation, EXIF, XMP and ICC: read, kept or dropped;
- :mod:`lowkey.pixels`: float tensors to and from integer samples;
- :mod:`lowkey.output_files`: output names, reports beside them, folder scans and writing.
"""

from lowkey.image_decode import ImageHeader, Photo, load_photo, probe_header
from lowkey.output_files import is_photo_file, output_path_for, report_path_for
from lowkey.pixels import to_uint8_hwc

__all__ = ["ImageHeader", "Photo", "is_photo_file", "load_photo", "output_path_for",
           "probe_header", "report_path_for", "to_uint8_hwc"]
