import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { decodeBase64, encodeBase64 } from '../src/lib/base64.js';

test('an 8 MB photo round-trips through base64 (no regex stack overflow)', () => {
  const bytes = new Uint8Array(randomBytes(8 * 1024 * 1024));
  const text = encodeBase64(bytes);
  assert.equal(text, Buffer.from(bytes).toString('base64'));
  const back = decodeBase64(text);
  assert.equal(back.length, bytes.length);
  assert.ok(Buffer.from(back).equals(Buffer.from(bytes)));
});

test('a 48 MB string is checked without recursion', () => {
  const text = 'A'.repeat(48 * 1024 * 1024);
  assert.equal(decodeBase64(text).length, 36 * 1024 * 1024);
});

test('strict decoding refuses what is not padded base64', () => {
  for (const bad of ['A', 'AB', 'ABC', 'A===', 'AB=C', '====', 'AB C', 'AB\n=', 'AAAA=', 'AA-_', 'A=A=']) {
    assert.throws(() => decodeBase64(bad), TypeError, JSON.stringify(bad));
  }
  for (const [good, length] of [['', 0], ['AA==', 1], ['AAA=', 2], ['AAAA', 3], ['+/+/AA==', 4]]) {
    assert.equal(decodeBase64(good).length, length, good);
  }
});
