import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeBase64, encodeBase64 } from '../src/lib/base64.js';
import { ChunkAssembler } from '../src/lib/chunks.js';
import { hostFileMessages } from './helpers.mjs';

const FILE = Uint8Array.from({ length: 10 }, (_, i) => i * 7);

async function assemble(chunks, result, options) {
  const assembler = new ChunkAssembler(options);
  for (const chunk of chunks) assembler.add(chunk);
  return assembler.finish(result);
}

test('chunks in order give the file back', async () => {
  const { chunks, result } = hostFileMessages('r', FILE, 4);
  assert.equal(chunks.length, 3);
  assert.deepEqual(await assemble(chunks, result), FILE);
});

test('one chunk', async () => {
  const { chunks, result } = hostFileMessages('r', FILE, 100);
  assert.deepEqual(await assemble(chunks, result), FILE);
});

const broken = {
  'a missing chunk': ({ chunks }) => [chunks[0], chunks[2]],
  'a duplicate chunk': ({ chunks }) => [chunks[0], chunks[0], chunks[1], chunks[2]],
  'chunks out of order': ({ chunks }) => [chunks[1], chunks[0], chunks[2]],
  'an index out of range': ({ chunks }) => [chunks[0], chunks[1], chunks[2], { ...chunks[2], index: 3 }],
  'a changed count': ({ chunks }) => [chunks[0], { ...chunks[1], count: 4 }, chunks[2]],
  'data that is not base64': ({ chunks }) => [chunks[0], { ...chunks[1], data: 'a b!' }, chunks[2]],
  'a negative index': ({ chunks }) => [{ ...chunks[0], index: -1 }],
};

for (const [what, make] of Object.entries(broken)) {
  test(`${what} is an integrity error`, async () => {
    const messages = hostFileMessages('r', FILE, 4);
    await assert.rejects(assemble(make(messages), messages.result), { code: 'integrity' });
  });
}

const badResults = {
  'too few chunks': (m) => ({ chunks: m.chunks.slice(0, 2), result: m.result }),
  'a wrong size': (m) => ({ chunks: m.chunks, result: { ...m.result, size: 11 } }),
  'a wrong sha256': (m) => ({ chunks: m.chunks, result: { ...m.result, sha256: '0'.repeat(64) } }),
  'a wrong chunk total': (m) => ({ chunks: m.chunks, result: { ...m.result, chunks: 2 } }),
  'no chunk at all': (m) => ({ chunks: [], result: m.result }),
  'changed bytes': (m) => ({
    chunks: [m.chunks[0], { ...m.chunks[1], data: Buffer.from([9, 9, 9, 9]).toString('base64') }, m.chunks[2]],
    result: m.result,
  }),
};

for (const [what, make] of Object.entries(badResults)) {
  test(`${what} never yields a file`, async () => {
    const { chunks, result } = make(hostFileMessages('r', FILE, 4));
    await assert.rejects(assemble(chunks, result), { code: 'integrity' });
  });
}

test('a failed assembler stays failed', async () => {
  const { chunks, result } = hostFileMessages('r', FILE, 4);
  const assembler = new ChunkAssembler();
  assembler.add(chunks[0]);
  assert.throws(() => assembler.add(chunks[2]), { code: 'integrity' });
  assert.throws(() => assembler.add(chunks[1]), { code: 'integrity' });
  await assert.rejects(assembler.finish(result), { code: 'integrity' });
});

test('a size cap stops a flood', () => {
  const { chunks } = hostFileMessages('r', FILE, 4);
  const assembler = new ChunkAssembler({ maxBytes: 6 });
  assembler.add(chunks[0]);
  assert.throws(() => assembler.add(chunks[1]), { code: 'integrity' });
});

test('base64 round trip, strict decoding', () => {
  const big = Uint8Array.from({ length: 100_000 }, (_, i) => (i * 31) % 256);
  assert.deepEqual(decodeBase64(encodeBase64(big)), big);
  assert.equal(encodeBase64(big), Buffer.from(big).toString('base64'));
  assert.deepEqual(decodeBase64(''), new Uint8Array());
  for (const bad of ['abc', 'ab c', 'ab==cd==', '====', null]) {
    assert.throws(() => decodeBase64(bad), TypeError, String(bad));
  }
});
