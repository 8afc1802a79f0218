import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mayBeImage, sniffImage } from '../src/lib/imageType.js';

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
  assert.equal(mayBeImage({ type: 'image/gif', name: 'a.gif' }), false);
  assert.equal(mayBeImage({ type: 'image/svg+xml', name: 'a.svg' }), false);
  assert.equal(mayBeImage({ type: '', name: 'notes.txt' }), false);
});
