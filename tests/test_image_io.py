"""Photos in and out (lowkey.image_formats, image_decode, image_encode, image_metadata, pixels,
output_files): decoding by content, orientation, metadata policy, round trips, hostile input,
output names."""

from __future__ import annotations

import io
import os
import struct
import sys
import zlib

import numpy as np
import pytest
import torch
from PIL import ExifTags, Image, ImageCms, ImageOps, JpegImagePlugin, PngImagePlugin

from lowkey import image_formats as formats
from lowkey.errors import ImageError
from lowkey.image_decode import load_photo, probe_image
from lowkey.image_encode import encode_photo
from lowkey.output_files import is_photo_file, output_path_for, save_photo
from lowkey.pixels import to_uint8_hwc

# --------------------------------------------------------------------------------------------
# Helpers (independent of the module under test)


def smooth_rgb(h: int = 48, w: int = 64) -> np.ndarray:
    """(h, w, 3) uint8 smooth colour image: lossy codecs keep it well, so errors are meaningful."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 100 * np.sin(xx / w * 2 * np.pi)
    g = 128 + 100 * np.cos(yy / h * 2 * np.pi)
    b = 60 + 150 * (xx + yy) / (w + h)
    return np.clip(np.stack([r, g, b], -1).round(), 0, 255).astype(np.uint8)


def noise(shape: tuple[int, ...], seed: int = 0, dtype: type = np.uint8) -> np.ndarray:
    top = np.iinfo(dtype).max
    return np.random.default_rng(seed).integers(0, top + 1, shape, dtype=np.int64).astype(dtype)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    if fmt == "PNG" and "xmp" in options:  # Pillow writes PNG XMP only through a text chunk
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", options.pop("xmp").decode("utf-8"))
        options["pnginfo"] = info
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    return buf.getvalue()


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def hwc(photo_pixels: torch.Tensor) -> np.ndarray:
    """(3, H, W) [0, 1] -> (H, W, 3) float in 0..255."""
    return photo_pixels.permute(1, 2, 0).numpy().astype(np.float64) * 255


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def png_bytes(
    values: np.ndarray, depth: int, colour_type: int, *, interlace: bool = False, extra: bytes = b""
) -> bytes:
    """A PNG written by hand (filter 0), for layouts Pillow cannot write (16-bit colour)."""
    h, w = values.shape[:2]
    dtype = ">u2" if depth == 16 else "u1"

    def scanlines(a: np.ndarray) -> bytes:
        if a.size == 0:
            return b""
        raw = np.ascontiguousarray(a.astype(dtype)).view(np.uint8).reshape(a.shape[0], -1)
        return np.concatenate([np.zeros((a.shape[0], 1), np.uint8), raw], axis=1).tobytes()

    if interlace:  # Adam7 passes as (x0, y0, dx, dy)
        passes = [
            (0, 0, 8, 8),
            (4, 0, 8, 8),
            (0, 4, 4, 8),
            (2, 0, 4, 4),
            (0, 2, 2, 4),
            (1, 0, 2, 2),
            (0, 1, 1, 2),
        ]
        body = b"".join(scanlines(values[y0::dy, x0::dx]) for x0, y0, dx, dy in passes)
    else:
        body = scanlines(values)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, colour_type, 0, 0, int(interlace))
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + extra
        + png_chunk(b"IDAT", zlib.compress(body))
        + png_chunk(b"IEND", b"")
    )


def png_ihdr(data: bytes) -> tuple[int, int, int, int]:
    """(width, height, bit depth, colour type) of a PNG."""
    assert data[12:16] == b"IHDR"
    w, h, depth, colour_type = struct.unpack(">IIBB", data[16:26])
    return w, h, depth, colour_type


def webp_chunks(data: bytes) -> list[bytes]:
    out, pos = [], 12
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        out.append(data[pos : pos + 4])
        pos += 8 + size + (size & 1)
    return out


SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
XMP_WITH_LOCATION = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description xmlns:exif="http://ns.adobe.com/exif/1.0/" xmlns:tiff="http://ns.adobe.com/tiff/1.0/"'
    b' exif:GPSLatitude="52,31.2N" tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>'
)
GPS = {
    ExifTags.GPS.GPSLatitudeRef: "N",
    ExifTags.GPS.GPSLatitude: (52.0, 31.0, 12.0),
    ExifTags.GPS.GPSLongitudeRef: "E",
    ExifTags.GPS.GPSLongitude: (13.0, 24.0, 36.0),
}


def camera_exif(orientation: int | None = 1, gps: bool = True) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "TestCam"
    exif[ExifTags.Base.Model] = "TC-1"
    exif[ExifTags.Base.DateTime] = "2024:05:06 07:08:09"
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.IFD.Exif] = {
        ExifTags.Base.DateTimeOriginal: "2024:05:06 07:08:09",
        ExifTags.Base.FNumber: 2.8,
        ExifTags.Base.ExposureTime: 0.004,
        ExifTags.Base.BodySerialNumber: "SN-123456",
        ExifTags.Base.ImageUniqueID: "0123456789abcdef0123456789abcdef",
        ExifTags.Base.MakerNote: b"VENDOR\x00secret preview and serial",
        ExifTags.Base.UserComment: b"ASCII\x00\x00\x00at home, 5 Main Street",
    }
    if gps:
        exif[ExifTags.IFD.GPSInfo] = GPS
    return exif


def with_thumbnail_ifd(exif_bytes: bytes, thumbnail: bytes) -> bytes:
    """Append an IFD1 with an embedded JPEG thumbnail (as cameras write) to a big-endian EXIF."""
    prefix, tiff = exif_bytes[:6], bytearray(exif_bytes[6:])
    assert tiff[:4] == b"MM\x00*"
    ifd0 = struct.unpack(">I", tiff[4:8])[0]
    count = struct.unpack(">H", tiff[ifd0 : ifd0 + 2])[0]
    next_pointer = ifd0 + 2 + 12 * count
    ifd1 = len(tiff) + (len(tiff) & 1)
    tiff += b"\x00" * (ifd1 - len(tiff))
    data_at = ifd1 + 2 + 2 * 12 + 4
    tiff += struct.pack(">H", 2)
    tiff += struct.pack(">HHII", 0x0201, 4, 1, data_at)  # JPEGInterchangeFormat
    tiff += struct.pack(">HHII", 0x0202, 4, 1, len(thumbnail))  # JPEGInterchangeFormatLength
    tiff += struct.pack(">I", 0) + thumbnail
    tiff[next_pointer : next_pointer + 4] = struct.pack(">I", ifd1)
    return prefix + bytes(tiff)


# --------------------------------------------------------------------------------------------
# Round trips, format by format and mode by mode


@pytest.mark.parametrize(
    ("mode", "alpha", "gray", "out_mode"),
    [
        ("RGB", False, False, "RGB"),
        ("RGBA", True, False, "RGBA"),
        ("L", False, True, "L"),
        ("LA", True, True, "LA"),
        ("1", False, True, "L"),
        ("P", False, False, "RGB"),
    ],
)
def test_png_round_trip_per_mode(mode, alpha, gray, out_mode):
    rgba = np.concatenate([smooth_rgb(), noise((48, 64, 1), seed=1)], axis=-1)
    source = Image.fromarray(rgba, "RGBA")
    if mode == "P":
        source = source.convert("RGB").quantize(64)
    else:
        source = source.convert(mode)
    photo = load_photo(encode(source, "PNG"))
    assert (photo.format, photo.mode, photo.grayscale, photo.bit_depth) == ("PNG", mode, gray, 8)
    assert photo.lossless
    assert photo.pixels.shape == (3, 48, 64) and photo.pixels.dtype == torch.float32
    expected = np.asarray(source.convert("RGB"), np.float64)
    assert np.abs(hwc(photo.pixels) - expected).max() <= 1e-3  # exact up to float rounding
    assert (photo.alpha is not None) == alpha
    if gray:
        assert torch.equal(photo.pixels[0], photo.pixels[1])
        assert torch.equal(photo.pixels[0], photo.pixels[2])

    out = decode(encode_photo(photo, photo.pixels))
    assert out.format == "PNG" and out.mode == out_mode and out.size == (64, 48)
    assert np.array_equal(np.asarray(out.convert("RGB")), np.asarray(source.convert("RGB")))
    if alpha:
        assert np.array_equal(np.asarray(out.getchannel("A")), np.asarray(source.getchannel("A")))


def test_palette_png_with_transparency_becomes_rgba():
    source = Image.fromarray(smooth_rgb()).quantize(32)
    source.info["transparency"] = 3
    photo = load_photo(encode(source, "PNG", transparency=3))
    assert photo.mode == "P" and photo.alpha is not None
    out = decode(encode_photo(photo, photo.pixels))
    assert out.mode == "RGBA"
    expected_alpha = np.where(np.asarray(source) == 3, 0, 255)
    assert np.array_equal(np.asarray(out.getchannel("A")), expected_alpha)


def test_rgb_png_with_a_transparent_colour_gets_an_alpha_channel():
    rgb = smooth_rgb()
    key = tuple(int(v) for v in rgb[5, 7])
    photo = load_photo(encode(Image.fromarray(rgb), "PNG", transparency=key))
    assert photo.alpha is not None
    assert np.array_equal(photo.alpha == 0, (rgb == key).all(-1))
    assert decode(encode_photo(photo, photo.pixels)).mode == "RGBA"


def test_quantisation_rounds_to_nearest():
    photo = load_photo(encode(Image.fromarray(np.zeros((4, 5, 3), np.uint8)), "PNG"))
    levels = torch.arange(60, dtype=torch.float32).reshape(3, 4, 5)
    below = (levels + 0.49) / 255  # rounds down
    above = (levels + 0.51) / 255  # rounds up (truncation would give `levels`)
    for pixels, expected in ((below, levels), (above, levels + 1)):
        out = np.asarray(decode(encode_photo(photo, pixels)))
        assert np.array_equal(out, expected.permute(1, 2, 0).numpy().astype(np.uint8))


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_jpeg_round_trip_q95_444(mode):
    source = Image.fromarray(smooth_rgb(64, 96)).convert(mode)
    photo = load_photo(encode(source, "JPEG", quality=98, subsampling=0))
    assert (photo.format, photo.mode, photo.grayscale, photo.lossless) == (
        "JPEG",
        mode,
        mode == "L",
        False,
    )
    assert photo.alpha is None
    data = encode_photo(photo, photo.pixels)
    out = decode(data)
    assert out.format == "JPEG" and out.mode == mode and out.size == (96, 64)
    if mode == "RGB":
        assert JpegImagePlugin.get_sampling(out) == 0  # 4:4:4
    assert psnr(np.asarray(out.convert("RGB")), np.asarray(source.convert("RGB"))) > 40


def test_grayscale_is_written_as_the_channel_mean():
    photo = load_photo(encode(Image.fromarray(np.zeros((6, 8), np.uint8)), "PNG"))
    assert photo.grayscale and photo.mode == "L"
    pixels = torch.rand(3, 6, 8, generator=torch.Generator().manual_seed(0))
    out = decode(encode_photo(photo, pixels))
    assert out.mode == "L"
    expected = (pixels.mean(0) * 255).round().numpy()
    assert np.array_equal(np.asarray(out), expected.astype(np.uint8))


def test_webp_lossless_with_alpha_stays_lossless_and_exact():
    rgba = np.concatenate([smooth_rgb(), noise((48, 64, 1), seed=2)], axis=-1)
    photo = load_photo(encode(Image.fromarray(rgba, "RGBA"), "WEBP", lossless=True, exact=True))
    assert (photo.format, photo.lossless) == ("WEBP", True)
    assert np.array_equal(photo.alpha, rgba[..., 3])
    perturbed = (photo.pixels + 0.02 * torch.randn(photo.pixels.shape)).clamp(0, 1)
    data = encode_photo(photo, perturbed)
    assert b"VP8L" in webp_chunks(data)
    out = np.asarray(decode(data))
    assert np.array_equal(out[..., 3], rgba[..., 3])  # alpha bit-exact
    expected = (perturbed * 255).round().permute(1, 2, 0).numpy()
    assert np.array_equal(out[..., :3], expected.astype(np.uint8))  # colour lossless too


@pytest.mark.parametrize("with_alpha", [False, True])
def test_webp_lossy_round_trip(with_alpha):
    rgb = smooth_rgb(64, 96)
    image = Image.fromarray(rgb)
    if with_alpha:
        image.putalpha(Image.fromarray(noise((64, 96), seed=3)))
    photo = load_photo(encode(image, "WEBP", quality=95))
    assert (photo.format, photo.lossless) == ("WEBP", False)
    data = encode_photo(photo, photo.pixels)
    assert b"VP8 " in webp_chunks(data) and b"VP8L" not in webp_chunks(data)
    out = decode(data)
    assert psnr(np.asarray(out.convert("RGB")), rgb) > 35
    if with_alpha:
        assert np.array_equal(np.asarray(out.getchannel("A")), np.asarray(image.getchannel("A")))


@pytest.mark.parametrize(
    ("colour_type", "channels", "interlace"),
    [(0, 1, False), (4, 2, False), (2, 3, False), (6, 4, False), (2, 3, True), (6, 4, True)],
)
def test_16_bit_png_stays_16_bit(colour_type, channels, interlace):
    values = noise((13, 11, channels), seed=colour_type, dtype=np.uint16)
    data = png_bytes(
        values if channels > 1 else values[..., 0], 16, colour_type, interlace=interlace
    )
    photo = load_photo(data)
    assert photo.bit_depth == 16 and photo.grayscale == (colour_type in (0, 4))
    colour = values[..., : 1 if colour_type in (0, 4) else 3]
    got = photo.pixels.permute(1, 2, 0).numpy()[..., : colour.shape[-1]].astype(np.float64) * 65535
    assert np.abs(got - colour).max() < 0.02  # every bit of the 16-bit samples
    if colour_type in (4, 6):
        assert photo.alpha.dtype == np.uint16 and np.array_equal(photo.alpha, values[..., -1])
    else:
        assert photo.alpha is None

    out = encode_photo(photo, photo.pixels)
    assert png_ihdr(out) == (11, 13, 16, colour_type)
    again = load_photo(out)
    assert torch.equal(again.pixels, photo.pixels)  # bit-exact 16-bit round trip
    if photo.alpha is not None:
        assert np.array_equal(again.alpha, photo.alpha)
    # An independent decoder (Pillow, which keeps the high byte of 16-bit colour) agrees.
    pil = np.asarray(decode(out))
    if colour_type == 0:
        assert np.array_equal(pil, values[..., 0])
    elif colour_type in (2, 6):
        assert np.array_equal(pil, (values >> 8).astype(np.uint8))


@pytest.mark.parametrize("keep_location", [False, True])
def test_16_bit_png_keeps_orientation_and_metadata_policy(keep_location):
    values = noise((13, 11, 3), seed=5, dtype=np.uint16)  # stored; orientation 6 turns it upright
    extra = (
        png_chunk(b"iCCP", b"sRGB\x00\x00" + zlib.compress(SRGB_ICC))
        + png_chunk(b"eXIf", camera_exif(6).tobytes()[6:])
        + png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + XMP_WITH_LOCATION)
    )
    photo = load_photo(png_bytes(values, 16, 2, extra=extra))
    upright = np.rot90(values, -1)
    assert photo.bit_depth == 16 and photo.size == (13, 11)
    got = photo.pixels.permute(1, 2, 0).numpy().astype(np.float64) * 65535
    assert np.array_equal(np.round(got).astype(np.uint16), upright)

    data = encode_photo(photo, photo.pixels, keep_location=keep_location)
    assert png_ihdr(data) == (13, 11, 16, 2)
    assert torch.equal(load_photo(data).pixels, photo.pixels)  # bit-exact
    out = decode(data)
    written = out.getexif()
    assert written.get(ExifTags.Base.Make) == "TestCam"
    assert written.get(ExifTags.Base.Orientation) == 1
    sub = written.get_ifd(ExifTags.IFD.Exif)
    assert float(sub.get(ExifTags.Base.ExposureTime)) == pytest.approx(0.004)
    assert ExifTags.Base.BodySerialNumber not in sub and ExifTags.Base.MakerNote not in sub
    assert bool(written.get_ifd(ExifTags.IFD.GPSInfo)) == keep_location
    assert ("xmp" in out.info) == keep_location
    if keep_location:
        assert b'tiff:Orientation="1"' in out.info["xmp"]
    assert out.info.get("icc_profile") == SRGB_ICC


def test_16_bit_png_to_jpeg_is_8_bit():
    values = noise((8, 8, 3), seed=9, dtype=np.uint16)
    photo = load_photo(png_bytes(values, 16, 2))
    out = decode(encode_photo(photo, photo.pixels, format="PNG"))
    assert out.mode == "RGB" and png_ihdr(encode_photo(photo, photo.pixels))[2] == 16
    assert decode(encode_photo(photo, photo.pixels, format="JPG")).format == "JPEG"


def test_mpo_is_read_as_its_primary_jpeg():
    first = Image.fromarray(smooth_rgb())
    second = Image.fromarray(255 - smooth_rgb())
    data = encode(first, "MPO", save_all=True, append_images=[second], quality=98)
    assert Image.open(io.BytesIO(data)).format == "MPO"
    photo = load_photo(data)
    assert photo.format == "JPEG"
    assert psnr(hwc(photo.pixels), smooth_rgb()) > 35
    out = Image.open(io.BytesIO(encode_photo(photo, photo.pixels)))
    assert out.format == "JPEG" and getattr(out, "n_frames", 1) == 1  # the extra picture is gone


# --------------------------------------------------------------------------------------------
# EXIF orientation

# What a camera stores for an upright scene U under each orientation: U transformed by the inverse.
STORED_FROM_UPRIGHT = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,  # the viewer turns it 90 degrees clockwise
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,  # the viewer turns it 90 degrees counter-clockwise
}


def upright_scene() -> np.ndarray:
    """A 24 x 40 scene with no symmetry: red block top-left, green block top-right."""
    scene = np.full((24, 40, 3), 90, np.uint8)
    scene[:8, :10] = (255, 0, 0)
    scene[:4, -6:] = (0, 255, 0)
    scene[-3:, 12:14] = (0, 0, 255)
    return scene


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_once(fmt, orientation):
    scene = upright_scene()
    stored = Image.fromarray(scene)
    if STORED_FROM_UPRIGHT[orientation] is not None:
        stored = stored.transpose(STORED_FROM_UPRIGHT[orientation])
    options = {"quality": 98, "subsampling": 0} if fmt == "JPEG" else {}
    if fmt == "WEBP":
        options = {"lossless": True}
    data = encode(stored, fmt, exif=camera_exif(orientation).tobytes(), **options)
    # Sanity: Pillow's own reference agrees that this file shows the upright scene.
    reference = np.asarray(ImageOps.exif_transpose(decode(data)).convert("RGB"), np.float64)
    assert np.abs(reference - scene).mean() < 3

    photo = load_photo(data)
    assert photo.size == (40, 24)
    got = hwc(photo.pixels)
    assert np.abs(got - scene).mean() < 3
    assert got[2, 2, 0] > 200 and got[2, 2, 1] < 60  # the red block landed top-left
    assert got[1, -2, 1] > 200 and got[1, -2, 0] < 60  # the green block top-right
    exif = Image.Exif()
    exif.load(photo.exif)
    assert exif[ExifTags.Base.Orientation] == 1

    out = decode(encode_photo(photo, photo.pixels))
    assert out.size == (40, 24)
    assert out.getexif().get(ExifTags.Base.Orientation, 1) == 1
    shown = np.asarray(ImageOps.exif_transpose(out).convert("RGB"), np.float64)
    assert np.abs(shown - scene).mean() < 3  # a viewer shows it upright: not rotated twice


def test_xmp_orientation_is_reset_when_kept():
    data = encode(
        Image.fromarray(smooth_rgb()), "JPEG", exif=camera_exif(1).tobytes(), xmp=XMP_WITH_LOCATION
    )
    photo = load_photo(data)
    assert b'tiff:Orientation="1"' in photo.xmp
    out = decode(encode_photo(photo, photo.pixels, keep_location=True))
    assert b'tiff:Orientation="6"' not in out.info["xmp"]


# --------------------------------------------------------------------------------------------
# Metadata policy


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_location_and_identifiers_are_removed_by_default(fmt):
    exif = camera_exif(1).tobytes()
    if fmt == "JPEG":
        exif = with_thumbnail_ifd(exif, encode(Image.fromarray(smooth_rgb(8, 8)), "JPEG"))
    data = encode(Image.fromarray(smooth_rgb()), fmt, exif=exif, xmp=XMP_WITH_LOCATION)
    photo = load_photo(data)
    assert Image.open(io.BytesIO(data)).getexif().get_ifd(ExifTags.IFD.GPSInfo)  # GPS was there

    out = decode(encode_photo(photo, photo.pixels))
    written = out.getexif()
    assert written.get(ExifTags.Base.Make) == "TestCam"
    assert written.get(ExifTags.Base.DateTime) == "2024:05:06 07:08:09"
    sub = written.get_ifd(ExifTags.IFD.Exif)
    assert sub.get(ExifTags.Base.DateTimeOriginal) == "2024:05:06 07:08:09"
    assert float(sub.get(ExifTags.Base.FNumber)) == pytest.approx(2.8)
    assert float(sub.get(ExifTags.Base.ExposureTime)) == pytest.approx(0.004)
    assert ExifTags.IFD.GPSInfo not in written
    assert not written.get_ifd(ExifTags.IFD.GPSInfo)
    for private in (
        ExifTags.Base.BodySerialNumber,
        ExifTags.Base.ImageUniqueID,
        ExifTags.Base.MakerNote,
        ExifTags.Base.UserComment,
    ):
        assert private not in sub
    assert not written.get_ifd(ExifTags.IFD.IFD1)  # no embedded thumbnail of the original
    assert "xmp" not in out.info
    raw = out.info["exif"]
    assert b"SN-123456" not in raw and b"Main Street" not in raw and b"JFIF" not in raw


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_keep_location_keeps_gps_and_xmp(fmt):
    data = encode(
        Image.fromarray(smooth_rgb()), fmt, exif=camera_exif(1).tobytes(), xmp=XMP_WITH_LOCATION
    )
    photo = load_photo(data)
    out = decode(encode_photo(photo, photo.pixels, keep_location=True))
    gps = out.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    assert gps[ExifTags.GPS.GPSLatitudeRef] == "N"
    assert tuple(float(v) for v in gps[ExifTags.GPS.GPSLatitude]) == (52.0, 31.0, 12.0)
    assert b"GPSLatitude" in out.info["xmp"]
    assert ExifTags.Base.BodySerialNumber not in out.getexif().get_ifd(ExifTags.IFD.Exif)


def test_real_photo_gps_is_stripped(faces_dev):
    path = faces_dev / "person00" / "img1.jpg"
    assert Image.open(path).getexif().get_ifd(ExifTags.IFD.GPSInfo)  # the original has GPS
    photo = load_photo(path)
    out = decode(encode_photo(photo, photo.pixels))
    assert not out.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    assert out.getexif().get(ExifTags.Base.Model) == "Canon EOS 5D Mark IV"
    assert photo.icc_profile and out.info.get("icc_profile") == photo.icc_profile


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "PNG16"])
def test_icc_profile_is_kept(fmt):
    if fmt == "PNG16":
        icc_chunk = png_chunk(b"iCCP", b"sRGB\x00\x00" + zlib.compress(SRGB_ICC))
        data = png_bytes(noise((6, 7, 3), dtype=np.uint16), 16, 2, extra=icc_chunk)
    else:
        data = encode(Image.fromarray(smooth_rgb()), fmt, icc_profile=SRGB_ICC)
    photo = load_photo(data)
    assert photo.icc_profile == SRGB_ICC
    assert decode(encode_photo(photo, photo.pixels)).info.get("icc_profile") == SRGB_ICC


# --------------------------------------------------------------------------------------------
# HEIF


@pytest.fixture
def heif():
    return pytest.importorskip(
        "pillow_heif", reason="pillow-heif (the heif extra) is not installed"
    )


def test_heic_round_trip(heif, tmp_path):
    heif.register_heif_opener()
    smooth = smooth_rgb(64, 96)
    stored = Image.fromarray(smooth).transpose(Image.Transpose.ROTATE_90)  # orientation 6
    data = encode(stored, "HEIF", quality=95, exif=camera_exif(6).tobytes(), icc_profile=SRGB_ICC)
    photo = load_photo(data)
    assert photo.format == "HEIF" and photo.size == (96, 64)
    assert psnr(hwc(photo.pixels), smooth) > 35  # upright: HEIF rotation applied exactly once
    assert photo.icc_profile == SRGB_ICC

    out_bytes = encode_photo(photo, photo.pixels)
    assert out_bytes[4:12] == b"ftypheic"
    out = decode(out_bytes)
    assert out.size == (96, 64) and psnr(np.asarray(out.convert("RGB")), smooth) > 33
    assert out.getexif().get(ExifTags.Base.Make) == "TestCam"
    assert not out.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    assert out.info.get("icc_profile") == SRGB_ICC
    upload = tmp_path / "upload.bin"
    upload.write_bytes(out_bytes)
    assert output_path_for(upload).name == "upload_lowkey.heic"


def test_heif_without_pillow_heif_says_to_install_the_extra(monkeypatch):
    monkeypatch.setattr(formats, "_heif_registered", False)
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # import fails
    fake_heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64
    with pytest.raises(ImageError, match=r"HEIF/HEIC image: .*lowkey\[heif\]"):
        load_photo(fake_heic)
    photo = load_photo(encode(Image.fromarray(smooth_rgb()), "PNG"))
    with pytest.raises(ImageError, match=r"writing HEIF: .*lowkey\[heif\]"):
        encode_photo(photo, photo.pixels, format="HEIC")


# --------------------------------------------------------------------------------------------
# The real photo that lies about its name


def test_webp_named_jpg_decodes_as_webp(faces_dev, tmp_path):
    path = faces_dev / "person02" / "img47.jpg"
    photo = load_photo(path)
    assert photo.format == "WEBP" and photo.source == path
    dest = output_path_for(path, tmp_path)
    assert dest == tmp_path / "img47_lowkey.webp"
    assert output_path_for(path).name == "img47_lowkey.webp"
    save_photo(photo, photo.pixels, dest)
    assert Image.open(dest).format == "WEBP"
    assert load_photo(dest).size == photo.size


# --------------------------------------------------------------------------------------------
# Hostile and unsupported input


def _jpeg() -> bytes:
    return encode(Image.fromarray(smooth_rgb()), "JPEG", quality=90)


def _png() -> bytes:
    return encode(Image.fromarray(noise((48, 64, 3))), "PNG")


def _header_only_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` (a decompression bomb's shape)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1000)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def _animated(fmt: str) -> bytes:
    frames = [Image.fromarray(smooth_rgb()), Image.fromarray(255 - smooth_rgb())]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:])


BAD_INPUTS = {
    "text": (lambda: b"hello, I am not a photo\n" * 10, "not an image"),
    "empty": (lambda: b"", "empty"),
    "truncated-jpeg": (lambda: _jpeg()[: len(_jpeg()) * 2 // 3], "truncated"),
    "jpeg-without-end": (lambda: _jpeg()[:-2], "truncated"),
    "truncated-png": (lambda: _png()[: len(_png()) // 2], "truncated"),
    "corrupt-png-header": (lambda: _png()[:20] + b"\xff" * 40, "not a valid PNG"),
    "bomb-30000x30000": (lambda: _header_only_png(30000, 30000), "bomb"),
    "over-50-megapixels": (lambda: _header_only_png(9000, 6000), "over the limit"),
    "side-over-20000": (lambda: _header_only_png(20001, 10), "over 20000"),
    "zero-width": (lambda: _header_only_png(0, 10), "PNG"),
    "gif": (lambda: encode(Image.fromarray(smooth_rgb()).convert("P"), "GIF"), "GIF"),
    "bmp": (lambda: encode(Image.fromarray(smooth_rgb()), "BMP"), "BMP"),
    "tiff": (lambda: encode(Image.fromarray(smooth_rgb()), "TIFF"), "TIFF"),
    "avif": (
        lambda: b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + b"\x00" * 40,
        "AVIF",
    ),
    "animated-webp": (lambda: _animated("WEBP"), "animated WebP"),
    "apng": (lambda: _animated("PNG"), "animated PNG"),
    "cmyk-jpeg": (lambda: encode(Image.new("CMYK", (8, 8), (0, 50, 100, 0)), "JPEG"), "CMYK"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_refused_without_output(case, tmp_path):
    make, message = BAD_INPUTS[case]
    data = make()
    with pytest.raises(ImageError, match=message):
        load_photo(data)
    path = tmp_path / f"{case}.jpg"  # the name says JPEG; it makes no difference
    path.write_bytes(data)
    with pytest.raises(ImageError, match=message):
        load_photo(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # nothing was written


def test_pixel_cap_is_configurable():
    data = encode(Image.fromarray(smooth_rgb(48, 64)), "PNG")
    assert load_photo(data).size == (64, 48)
    with pytest.raises(ImageError, match="3072 pixels, over the limit of 3000"):
        load_photo(data, max_pixels=3000)


def test_byte_cap(tmp_path):
    data = _jpeg()
    with pytest.raises(ImageError, match="over the limit"):
        load_photo(data, max_bytes=len(data) - 1)
    path = tmp_path / "a.jpg"
    path.write_bytes(data)
    with pytest.raises(ImageError, match="over the limit"):
        load_photo(path, max_bytes=100)
    assert load_photo(path, max_bytes=len(data)).format == "JPEG"


def test_missing_file_and_folder_are_refused(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_photo(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="not a regular file"):
        load_photo(tmp_path)


# --------------------------------------------------------------------------------------------
# Saving


@pytest.fixture
def jpeg_on_disk(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(_jpeg())
    return path


def test_save_refuses_the_source_itself(jpeg_on_disk):
    original = jpeg_on_disk.read_bytes()
    photo = load_photo(jpeg_on_disk)
    for overwrite in (False, True):
        with pytest.raises(ImageError, match="original"):
            save_photo(photo, photo.pixels, jpeg_on_disk, overwrite=overwrite)
    link = jpeg_on_disk.with_name("link.jpg")
    os.link(jpeg_on_disk, link)  # another name for the same file
    with pytest.raises(ImageError, match="original"):
        save_photo(photo, photo.pixels, link, overwrite=True)
    assert jpeg_on_disk.read_bytes() == original


def test_save_refuses_an_existing_destination_unless_overwrite(jpeg_on_disk):
    photo = load_photo(jpeg_on_disk)
    dest = jpeg_on_disk.with_name("out.jpg")
    dest.write_bytes(b"precious")
    with pytest.raises(ImageError, match="exists"):
        save_photo(photo, photo.pixels, dest)
    assert dest.read_bytes() == b"precious"
    save_photo(photo, photo.pixels, dest, overwrite=True)
    assert Image.open(dest).format == "JPEG"


def test_save_writes_atomically_and_leaves_no_temporary_file(jpeg_on_disk):
    photo = load_photo(jpeg_on_disk)
    dest = output_path_for(jpeg_on_disk)
    assert dest == jpeg_on_disk.with_name("photo_lowkey.jpg")
    assert save_photo(photo, photo.pixels, dest) == dest
    assert sorted(p.name for p in jpeg_on_disk.parent.iterdir()) == [
        "photo.jpg",
        "photo_lowkey.jpg",
    ]
    assert psnr(np.asarray(Image.open(dest)), np.asarray(Image.open(jpeg_on_disk))) > 40


def test_bad_pixels_write_nothing(jpeg_on_disk):
    photo = load_photo(jpeg_on_disk)
    dest = jpeg_on_disk.with_name("out.jpg")
    bad = {
        "shape": torch.zeros(3, 10, 10),
        "nan": torch.full_like(photo.pixels, float("nan")),
        "dtype": torch.zeros(photo.pixels.shape, dtype=torch.uint8),
    }
    for pixels in bad.values():
        with pytest.raises(ValueError):
            save_photo(photo, pixels, dest)
    with pytest.raises(ValueError, match="quality"):
        save_photo(photo, photo.pixels, dest, quality=0)
    assert sorted(p.name for p in jpeg_on_disk.parent.iterdir()) == ["photo.jpg"]


def test_alpha_cannot_go_to_jpeg():
    image = Image.fromarray(np.concatenate([smooth_rgb(), noise((48, 64, 1))], axis=-1), "RGBA")
    photo = load_photo(encode(image, "PNG"))
    with pytest.raises(ValueError, match="alpha"):
        encode_photo(photo, photo.pixels, format="JPEG")
    assert decode(encode_photo(photo, photo.pixels, format="webp")).mode == "RGBA"


def test_output_path_for(tmp_path):
    source = tmp_path / "Holiday.JPG"
    source.write_bytes(_jpeg())
    assert output_path_for(source) == tmp_path / "Holiday_lowkey.JPG"
    assert output_path_for(source, tmp_path / "out") == tmp_path / "out" / "Holiday_lowkey.JPG"
    assert output_path_for(source, format="png").name == "Holiday_lowkey.png"
    assert output_path_for(source, tmp_path / "out", suffix="") == tmp_path / "out" / "Holiday.JPG"
    with pytest.raises(ValueError, match="source itself"):
        output_path_for(source, suffix="")
    png = tmp_path / "scan.jpeg"
    png.write_bytes(_png())
    assert output_path_for(png).name == "scan_lowkey.png"


def test_grayscale_into_webp_keeps_equal_channels():
    photo = load_photo(encode(Image.fromarray(smooth_rgb()).convert("L"), "PNG"))
    pixels = torch.rand(3, 48, 64, generator=torch.Generator().manual_seed(1))
    out = np.asarray(decode(encode_photo(photo, pixels, format="WEBP")))
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 0], out[..., 2])


@pytest.mark.parametrize(("colour_type", "channels"), [(0, 1), (2, 3)])
def test_16_bit_png_with_a_transparent_value_gets_16_bit_alpha(colour_type, channels):
    values = noise((9, 10, channels), seed=4, dtype=np.uint16)
    values[5, 6] = values[3, 4]  # the key colour twice
    key = values[3, 4]
    trns = png_chunk(b"tRNS", struct.pack(f">{channels}H", *key))
    data = png_bytes(values if channels > 1 else values[..., 0], 16, colour_type, extra=trns)
    photo = load_photo(data)
    assert photo.alpha.dtype == np.uint16
    assert np.array_equal(photo.alpha == 0, (values == key).all(-1))
    assert set(np.unique(photo.alpha)) == {0, 65535}
    out = encode_photo(photo, photo.pixels)
    assert png_ihdr(out)[2:] == (16, colour_type + 4)  # 16-bit gray + alpha, or RGBA
    assert np.array_equal(load_photo(out).alpha, photo.alpha)


def test_unreadable_exif_is_dropped_not_fatal(caplog):
    data = encode(
        Image.fromarray(smooth_rgb()), "JPEG", exif=b"Exif\x00\x00this is not a TIFF header"
    )
    photo = load_photo(data)
    assert photo.exif is None and photo.size == (64, 48)
    assert "unreadable EXIF" in caplog.text
    assert not decode(encode_photo(photo, photo.pixels)).getexif()


def test_multi_image_heif_is_refused(heif):
    heif.register_heif_opener()
    first, second = Image.fromarray(smooth_rgb()), Image.fromarray(255 - smooth_rgb())
    data = encode(first, "HEIF", save_all=True, append_images=[second])
    with pytest.raises(ImageError, match="2 images"):
        load_photo(data)


def test_icc_profile_must_fit_the_output_channels():
    gray_icc = SRGB_ICC[:16] + b"GRAY" + SRGB_ICC[20:]  # header says gray; enough for this check
    gray = Image.fromarray(smooth_rgb()).convert("L")
    photo = load_photo(encode(gray, "PNG", icc_profile=gray_icc))
    assert photo.icc_profile == gray_icc
    assert decode(encode_photo(photo, photo.pixels)).info.get("icc_profile") == gray_icc
    assert "icc_profile" not in decode(encode_photo(photo, photo.pixels, format="WEBP")).info


def test_probe_reads_format_and_size_from_the_header_and_names_each_refusal():
    """``probe_image`` decodes nothing and refuses as ``load_photo`` does, with a class per
    reason (the daemon's error codes rest on them)."""
    from lowkey.errors import TooManyPixels, UnsupportedImage

    buffer = io.BytesIO()
    Image.new("RGB", (300, 200), "white").save(buffer, format="PNG")
    png_bytes = buffer.getvalue()
    assert probe_image(png_bytes) == ("PNG", (300, 200))
    with pytest.raises(TooManyPixels):
        probe_image(png_bytes, max_pixels=300 * 200 - 1)
    gif = io.BytesIO()
    Image.new("RGB", (4, 4)).save(gif, format="GIF")
    with pytest.raises(UnsupportedImage):
        probe_image(gif.getvalue())
    with pytest.raises(ImageError) as corrupt:
        probe_image(png_bytes[:20])
    assert not isinstance(corrupt.value, (TooManyPixels, UnsupportedImage))
    with pytest.raises(TooManyPixels):  # the full decode refuses with the same class
        load_photo(png_bytes, max_pixels=1000)


# --------------------------------------------------------------------------------------------
# The shared 8-bit conversion and the folder-scan rule


def test_to_uint8_hwc_rounds_clamps_and_matches_what_encode_writes():
    levels = torch.arange(60, dtype=torch.float32).reshape(3, 4, 5)
    pixels = ((levels + 0.51) / 255).requires_grad_(True)  # rounds up; truncation would not
    out = to_uint8_hwc(pixels)
    assert out.dtype == np.uint8 and out.shape == (4, 5, 3) and out.flags.c_contiguous
    assert np.array_equal(out, (levels + 1).permute(1, 2, 0).numpy().astype(np.uint8))
    assert out[0, 0].tolist() == [1, 21, 41]  # channel order kept: R, G, B
    assert torch.equal(pixels.detach(), (levels + 0.51) / 255)  # the input is left alone
    wild = torch.tensor([-0.5, 1.7, float("inf"), float("-inf")]).reshape(1, 2, 2).expand(3, 2, 2)
    assert to_uint8_hwc(wild)[..., 0].tolist() == [[0, 255], [255, 0]]
    photo = load_photo(encode(Image.fromarray(np.zeros((48, 64, 3), np.uint8)), "PNG"))
    noisy = torch.rand(3, 48, 64, generator=torch.Generator().manual_seed(3))
    assert np.array_equal(to_uint8_hwc(noisy), np.asarray(decode(encode_photo(photo, noisy))))


def test_to_uint8_hwc_refuses_other_shapes_and_integers():
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        to_uint8_hwc(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="floats"):
        to_uint8_hwc(torch.zeros(3, 4, 4, dtype=torch.uint8))


def test_encode_refuses_nan_but_clamps_infinities():
    photo = load_photo(encode(Image.fromarray(np.zeros((2, 2, 3), np.uint8)), "PNG"))
    pixels = torch.zeros(3, 2, 2)
    pixels[0, 0, 0], pixels[1, 1, 1] = float("inf"), float("-inf")  # their sum is NaN
    out = np.asarray(decode(encode_photo(photo, pixels)))
    assert out[0, 0, 0] == 255 and out[1, 1, 1] == 0
    pixels[2, 0, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        encode_photo(photo, pixels)


def test_image_suffixes_are_every_extension_of_every_format():
    assert formats.IMAGE_SUFFIXES == {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".heic",
                                       ".heif", ".hif"}
    assert all(ext in formats.IMAGE_SUFFIXES for exts in formats.EXTENSIONS.values()
               for ext in exts)


def test_is_photo_file_takes_photos_by_name_and_skips_hidden_files_and_outputs(tmp_path):
    names = ["a.jpg", "B.JPEG", "c.jfif", "d.hif", "e.png", "f.webp", "g.HEIC",  # photos
             "holiday_lowkey_party.jpg",  # "_lowkey" inside the stem: a user's own name
             "a_lowkey.jpg", "B_lowkey.JPEG", "x_lowkey_lowkey.png",  # LowKey outputs
             "._a.jpg", ".hidden.png",  # hidden (macOS AppleDouble files, dot files)
             "notes.txt", "h.gif", "i.tiff", "jpg"]  # not a photo extension
    for name in names:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "folder.jpg").mkdir()  # not a file
    taken = sorted(p.name for p in tmp_path.iterdir() if is_photo_file(p))
    assert taken == sorted(names[:8])
    assert not is_photo_file(tmp_path / "missing.jpg")
    # what output_path_for names is an output for the rule
    source = tmp_path / "e.png"
    source.write_bytes(encode(Image.fromarray(smooth_rgb()), "PNG"))
    output = output_path_for(source)
    output.write_bytes(b"")
    assert output.name == "e_lowkey.png" and not is_photo_file(output)
