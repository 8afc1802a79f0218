// Drawing the toolbar icons (one per state and size) as PNG files, with nothing but zlib.
import { deflateSync } from 'node:zlib';
import { crc32 } from './crc32.mjs';

const COLORS = {
  on: [0x1e, 0x8e, 0x3e], paused: [0x5f, 0x63, 0x68], working: [0x1a, 0x73, 0xe8], error: [0xd9, 0x30, 0x25],
};

// Shapes in unit coordinates (0..1); each returns whether a point is inside.
const inCircle = (cx, cy, r) => (x, y) => (x - cx) ** 2 + (y - cy) ** 2 <= r * r;
const inRect = (x0, y0, x1, y1) => (x, y) => x >= x0 && x <= x1 && y >= y0 && y <= y1;
const inEllipse = (cx, cy, rx, ry) => (x, y) => ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1;

// The white glyph of each state: a mask (on), pause bars, three dots (working), "!" (error).
const GLYPHS = {
  on: (x, y) => inEllipse(0.5, 0.5, 0.32, 0.17)(x, y)
    && !inCircle(0.37, 0.49, 0.075)(x, y) && !inCircle(0.63, 0.49, 0.075)(x, y),
  paused: (x, y) => inRect(0.34, 0.28, 0.44, 0.72)(x, y) || inRect(0.56, 0.28, 0.66, 0.72)(x, y),
  working: (x, y) => [0.3, 0.5, 0.7].some((cx) => inCircle(cx, 0.5, 0.08)(x, y)),
  error: (x, y) => inRect(0.44, 0.22, 0.56, 0.6)(x, y) || inCircle(0.5, 0.74, 0.07)(x, y),
};

/**
 * The RGBA pixels of a state's icon (4x4 supersampled edges).
 * @param {string} state on, paused, working or error
 * @param {number} size pixels per side
 * @returns {Uint8Array}
 */
export function drawIcon(state, size) {
  const [r, g, b] = COLORS[state];
  const glyph = GLYPHS[state];
  const disc = inCircle(0.5, 0.5, 0.48);
  const pixels = new Uint8Array(size * size * 4);
  const n = 4;
  for (let py = 0; py < size; py += 1) {
    for (let px = 0; px < size; px += 1) {
      let cover = 0;
      let white = 0;
      for (let sy = 0; sy < n; sy += 1) {
        for (let sx = 0; sx < n; sx += 1) {
          const x = (px + (sx + 0.5) / n) / size;
          const y = (py + (sy + 0.5) / n) / size;
          if (disc(x, y)) {
            cover += 1;
            if (glyph(x, y)) white += 1;
          }
        }
      }
      const o = (py * size + px) * 4;
      const w = cover ? white / cover : 0;
      pixels[o] = Math.round(r + (255 - r) * w);
      pixels[o + 1] = Math.round(g + (255 - g) * w);
      pixels[o + 2] = Math.round(b + (255 - b) * w);
      pixels[o + 3] = Math.round((255 * cover) / (n * n));
    }
  }
  return pixels;
}

function chunk(type, data) {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}

/**
 * A PNG file (8-bit RGBA) of `pixels`.
 * @param {Uint8Array} pixels RGBA, row by row
 * @param {number} width
 * @param {number} height
 * @returns {Buffer}
 */
export function encodePng(pixels, width, height) {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = 6; // RGBA
  const rows = Buffer.alloc((width * 4 + 1) * height);
  for (let y = 0; y < height; y += 1) {
    rows[y * (width * 4 + 1)] = 0; // filter: none
    Buffer.from(pixels.buffer, pixels.byteOffset + y * width * 4, width * 4)
      .copy(rows, y * (width * 4 + 1) + 1);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', deflateSync(rows, { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}
