/**
 * Which files are photos LowKey protects: JPEG, PNG, WebP and HEIC/HEIF, recognised by their
 * first bytes (the browser's `type` comes from the file name and may lie).
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
  if (type.startsWith('image/')) return !['image/svg+xml', 'image/gif'].includes(type);
  if (type && type !== 'application/octet-stream') return false;
  return !/\.(pdf|txt|docx?|xlsx?|pptx?|zip|mp4|mov|webm|mp3|wav|gif|svg)$/i.test(file?.name ?? '');
}
