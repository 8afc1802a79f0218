/**
 * Which files are photos LowKey protects: JPEG, PNG, WebP and HEIC/HEIF, recognised by their
 * first bytes (the browser's `type` comes from the file name and may lie). Other images (AVIF,
 * GIF, TIFF, BMP, JPEG XL...) are not protected, and never pass silently either: the user
 * chooses ({@link unprotectableFormat}). SVG (drawings, not photos) and files that are not
 * images pass as they are.
 */

/** The most bytes {@link sniffImage} needs. */
export const SNIFF_BYTES = 32;

const HEIC_BRANDS = new Set(['heic', 'heix', 'heim', 'heis', 'hevc', 'hevx', 'hevm', 'hevs']);
const HEIF_BRANDS = new Set(['mif1', 'msf1']);

function ascii(bytes, start, end) {
  return String.fromCharCode(...bytes.subarray(start, end));
}

/**
 * The image type of a file's first bytes, or null when it is none LowKey protects
 * (GIF, SVG, AVIF, anything else).
 * @param {Uint8Array|ArrayLike<number>} input at least the first {@link SNIFF_BYTES} bytes
 * @returns {'image/jpeg'|'image/png'|'image/webp'|'image/heic'|'image/heif'|null}
 */
export function sniffImage(input) {
  // No instanceof: in Firefox, bytes read in a content script may come from the page's
  // compartment, where they are another global's Uint8Array. Copy the head into ours.
  if (input == null || typeof input.length !== 'number') return null;
  const bytes = Uint8Array.from({ length: Math.min(input.length, SNIFF_BYTES) }, (_, i) => input[i] & 0xff);
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) {
    return 'image/jpeg';
  }
  if (bytes.length >= 8 && ascii(bytes, 0, 8) === '\x89PNG\r\n\x1a\n') return 'image/png';
  if (bytes.length >= 12 && ascii(bytes, 0, 4) === 'RIFF' && ascii(bytes, 8, 12) === 'WEBP') {
    return 'image/webp';
  }
  if (bytes.length >= 12 && ascii(bytes, 4, 8) === 'ftyp') {
    const brand = ascii(bytes, 8, 12);
    if (HEIC_BRANDS.has(brand)) return 'image/heic';
    if (HEIF_BRANDS.has(brand)) return 'image/heif';
  }
  return null;
}

/**
 * Whether a file may be a photo, from what is known without reading it (its type and name):
 * worth holding back from the page until its bytes are read. False only for files that surely
 * are not (a PDF, a video, a text file).
 * @param {{type?: string, name?: string}} file
 * @returns {boolean}
 */
export function mayBeImage(file) {
  const type = String(file?.type ?? '').toLowerCase();
  if (type.startsWith('image/')) return type !== 'image/svg+xml';
  if (type && type !== 'application/octet-stream') return false;
  return !/\.(pdf|txt|docx?|xlsx?|pptx?|zip|mp4|mov|webm|mp3|wav|svg)$/i.test(file?.name ?? '');
}

/** Image files by name (for files whose type the browser left empty). */
const IMAGE_EXTENSIONS = /\.(avif|avifs|gif|tiff?|bmp|dib|jxl|jp2|j2k|jpx|jpe?g|jfif|pjpeg|pjp|png|apng|webp|heic|heif|hif|ico|cur|tga|dng|cr2|cr3|nef|arw|orf|rw2|raf|psd|exr|hdr|jxr|wdp|qoi)$/i;

/** Formats recognised by their first bytes, which LowKey cannot protect. */
function sniffOther(bytes) {
  const at = (start, text) => bytes.length >= start + text.length && ascii(bytes, start, start + text.length) === text;
  if (at(4, 'ftyp')) {
    const brand = ascii(bytes, 8, 12);
    if (brand === 'avif' || brand === 'avis') return 'AVIF';
    if (brand === 'jxl ') return 'JPEG XL';
  }
  if (at(0, 'GIF87a') || at(0, 'GIF89a')) return 'GIF';
  if (at(0, 'II*\0') || at(0, 'MM\0*')) return 'TIFF';
  if (at(0, 'BM')) return 'BMP';
  if (bytes.length >= 2 && bytes[0] === 0xff && bytes[1] === 0x0a) return 'JPEG XL';
  if (at(4, 'JXL ')) return 'JPEG XL';
  if (at(4, 'jP  ')) return 'JPEG 2000';
  if (at(0, '8BPS')) return 'PSD';
  return null;
}

/**
 * The name of an image format LowKey cannot protect, or null: null for the photos it protects
 * (see {@link sniffImage}) and for files that are no image (a PDF, a text, an SVG drawing).
 * An image is recognised by its first bytes, its declared type (`image/*`) or its name.
 * @param {Uint8Array|ArrayLike<number>} head the file's first {@link SNIFF_BYTES} bytes (or more)
 * @param {{type?: string, name?: string}} file
 * @returns {string|null} e.g. 'AVIF', 'GIF', 'TIFF'
 */
export function unprotectableFormat(head, file) {
  if (sniffImage(head) !== null) return null;
  const bytes = head == null || typeof head.length !== 'number' ? new Uint8Array()
    : Uint8Array.from({ length: Math.min(head.length, SNIFF_BYTES) }, (_, i) => head[i] & 0xff);
  const type = String(file?.type ?? '').toLowerCase();
  if (type === 'image/svg+xml') return null;
  if (type && !type.startsWith('image/') && type !== 'application/octet-stream') return null;
  const sniffed = sniffOther(bytes);
  if (sniffed) return sniffed;
  const name = String(file?.name ?? '');
  const extension = IMAGE_EXTENSIONS.exec(name)?.[1];
  if (type.startsWith('image/')) {
    const subtype = type.slice('image/'.length).replace(/^x-/, '').replace(/[+;].*$/, '');
    return subtype ? subtype.toUpperCase() : (extension?.toUpperCase() ?? 'image');
  }
  if (/\.svgz?$/i.test(name)) return null;
  return extension ? extension.toUpperCase() : null;
}
