import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mayBeImage, sniffImage, unprotectableFormat } from '../src/lib/imageType.js';

const bytes = (...parts) => Uint8Array.from(parts.flatMap((p) => (typeof p === 'string' ? [...p].map((c) => c.charCodeAt(0)) : p)));

test('photos are recognised by their bytes', () => {
  assert.equal(sniffImage(bytes([0xff, 0xd8, 0xff, 0xe0], 'JFIF')), 'image/jpeg');
  assert.equal(sniffImage(bytes([0x89], 'PNG\r\n\x1a\n', [0, 0])), 'image/png');
  assert.equal(sniffImage(bytes('RIFF', [1, 2, 3, 4], 'WEBPVP8 ')), 'image/webp');
  assert.equal(sniffImage(bytes([0, 0, 0, 24], 'ftypheic', [0, 0, 0, 0], 'mif1heic')), 'image/heic');
  assert.equal(sniffImage(bytes([0, 0, 0, 24], 'ftypmif1', [0, 0, 0, 0], 'mif1heic')), 'image/heif');
});

test('other files are not photos', () => {
  assert.equal(sniffImage(bytes('GIF89a', [0, 0, 0, 0, 0, 0])), null);
  assert.equal(sniffImage(bytes('%PDF-1.7\n')), null);
  assert.equal(sniffImage(bytes('<svg xmlns="http://www.w3.org/2000/svg">')), null);
  assert.equal(sniffImage(bytes([0, 0, 0, 28], 'ftypavif', [0, 0, 0, 0], 'avifmif1')), null);
  assert.equal(sniffImage(bytes([0, 0, 0, 28], 'ftypisom', [0, 0, 0, 0])), null);
  assert.equal(sniffImage(bytes('RIFF', [1, 2, 3, 4], 'WAVEfmt ')), null);
  assert.equal(sniffImage(bytes([0xff, 0xd8])), null);
  assert.equal(sniffImage(new Uint8Array()), null);
  assert.equal(sniffImage(null), null);
});

test('bytes from another realm (Firefox content scripts) are read all the same', async () => {
  const vm = await import('node:vm');
  const foreign = vm.runInNewContext('new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 1, 2])');
  assert.equal(foreign instanceof Uint8Array, false);
  assert.equal(sniffImage(foreign), 'image/jpeg');
  assert.equal(sniffImage([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), 'image/png');
});

test('mayBeImage holds back what may be a photo only', () => {
  assert.equal(mayBeImage({ type: 'image/jpeg', name: 'a.jpg' }), true);
  assert.equal(mayBeImage({ type: 'image/heic', name: 'a.heic' }), true);
  assert.equal(mayBeImage({ type: '', name: 'IMG_1.HEIC' }), true);
  assert.equal(mayBeImage({ type: 'application/octet-stream', name: 'blob' }), true);
  assert.equal(mayBeImage({ type: 'application/pdf', name: 'a.pdf' }), false);
  assert.equal(mayBeImage({ type: 'video/mp4', name: 'a.mp4' }), false);
  // A GIF may be a photo LowKey cannot protect: held, so the user chooses (unprotectableFormat).
  assert.equal(mayBeImage({ type: 'image/gif', name: 'a.gif' }), true);
  assert.equal(mayBeImage({ type: '', name: 'a.gif' }), true);
  assert.equal(mayBeImage({ type: 'image/svg+xml', name: 'a.svg' }), false);
  assert.equal(mayBeImage({ type: '', name: 'notes.txt' }), false);
});

test('images LowKey cannot protect are named, so the user chooses; other files are not images', () => {
  const avif = bytes([0, 0, 0, 28], 'ftypavif', [0, 0, 0, 0], 'avifmif1');
  assert.equal(unprotectableFormat(avif, { type: 'image/avif', name: 'a.avif' }), 'AVIF');
  assert.equal(unprotectableFormat(avif, { type: '', name: 'renamed.jpg' }), 'AVIF');
  assert.equal(unprotectableFormat(bytes('GIF89a', [1, 0, 1, 0]), { type: 'image/gif', name: 'a.gif' }), 'GIF');
  assert.equal(unprotectableFormat(bytes('II*', [0, 8, 0, 0, 0]), { type: 'image/tiff', name: 'a.tif' }), 'TIFF');
  assert.equal(unprotectableFormat(bytes('MM', [0], '*', [0, 0, 0, 8]), { type: '', name: 'scan' }), 'TIFF');
  assert.equal(unprotectableFormat(bytes('BM', [1, 2, 3, 4]), { type: 'image/bmp', name: 'a.bmp' }), 'BMP');
  assert.equal(unprotectableFormat(bytes([0xff, 0x0a, 1, 2]), { type: 'image/jxl', name: 'a.jxl' }), 'JPEG XL');
  assert.equal(unprotectableFormat(bytes([0, 0, 0, 12], 'JXL ', [0x0d, 0x0a, 0x87, 0x0a]), { type: '', name: 'x' }), 'JPEG XL');
  // Declared an image, bytes unknown (or damaged): still the user's choice.
  assert.equal(unprotectableFormat(bytes('????????'), { type: 'image/x-portable-pixmap', name: 'a.ppm' }), 'PORTABLE-PIXMAP');
  assert.equal(unprotectableFormat(bytes('????????'), { type: 'image/jpeg', name: 'broken.jpg' }), 'JPEG');
  assert.equal(unprotectableFormat(bytes('????????'), { type: '', name: 'photo.AVIF' }), 'AVIF');
  // Photos LowKey protects, and what is no image, are not "unprotectable".
  assert.equal(unprotectableFormat(bytes([0xff, 0xd8, 0xff, 0xe0]), { type: 'image/jpeg', name: 'a.jpg' }), null);
  assert.equal(unprotectableFormat(bytes('%PDF-1.7\n'), { type: 'application/pdf', name: 'a.pdf' }), null);
  assert.equal(unprotectableFormat(bytes('BMW notes\n'), { type: 'text/plain', name: 'cars.txt' }), null);
  assert.equal(unprotectableFormat(bytes('hello'), { type: '', name: 'notes.txt' }), null);
  assert.equal(unprotectableFormat(bytes('hello'), { type: 'application/octet-stream', name: 'blob' }), null);
  assert.equal(unprotectableFormat(bytes('<svg xmlns="x">'), { type: 'image/svg+xml', name: 'a.svg' }), null);
  assert.equal(unprotectableFormat(new Uint8Array(), { type: '', name: 'empty' }), null);
});
