// content/link.js: the content side of the protect port.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BackgroundLink } from '../src/content/link.js';
import { FakePort } from './helpers.mjs';

function link(options) {
  const ports = [];
  const api = { runtime: { connect: () => { const p = new FakePort(); ports.push(p); return p; } } };
  return { link: new BackgroundLink(api, options), ports };
}

const photo = { name: 'a.jpg', mime: 'image/jpeg', data: 'AAAA' };

test('a port closed by the background fails every waiting photo (disconnected)', async () => {
  const { link: l, ports } = link();
  const a = l.protect(photo);
  const b = l.protect(photo);
  ports[0].drop();
  await assert.rejects(a, { code: 'disconnected' });
  await assert.rejects(b, { code: 'disconnected' });
  assert.equal(l.pending.size, 0);
});

test('a photo with no message at all for too long fails (timeout) and is cancelled', async () => {
  const { link: l, ports } = link({ silenceMs: 60 });
  const started = Date.now();
  const answer = l.protect(photo);
  const { key } = ports[0].posted[0];
  await assert.rejects(answer, { code: 'timeout' });
  assert.ok(Date.now() - started >= 55);
  assert.deepEqual(ports[0].posted[1], { type: 'cancel', key });
  assert.equal(l.pending.size, 0);
});

test('progress keeps a photo alive; the answer ends its timer', async () => {
  const { link: l, ports } = link({ silenceMs: 80 });
  const phases = [];
  const answer = l.protect(photo, { onProgress: (p) => phases.push(p.phase) });
  const { key } = ports[0].posted[0];
  for (let i = 0; i < 4; i += 1) {
    await new Promise((r) => setTimeout(r, 40));
    ports[0].deliver({ type: 'progress', key, phase: 'attack', percent: i });
  }
  ports[0].deliver({ type: 'result', key, data: 'AAAA', mime: 'image/jpeg' });
  assert.deepEqual(await answer, { data: 'AAAA', mime: 'image/jpeg', recognition: null });
  assert.equal(phases.length, 4);
  await new Promise((r) => setTimeout(r, 120)); // no late timeout, no stray cancel
  assert.equal(ports[0].posted.length, 1);
});

test('an error from the background keeps its code', async () => {
  const { link: l, ports } = link();
  const answer = l.protect(photo);
  ports[0].deliver({ type: 'error', key: ports[0].posted[0].key, code: 'too-large', message: 'the protected photo is 70 MB' });
  await assert.rejects(answer, { code: 'too-large', message: /70 MB/ });
});

test('aborting a photo cancels it in the background and fails it (cancelled)', async () => {
  const { link: l, ports } = link();
  const controller = new AbortController();
  const answer = l.protect(photo, { signal: controller.signal });
  const { key } = ports[0].posted[0];
  controller.abort();
  await assert.rejects(answer, { code: 'cancelled' });
  assert.deepEqual(ports[0].posted[1], { type: 'cancel', key });
  assert.equal(l.pending.size, 0);
  ports[0].deliver({ type: 'result', key, data: 'AAAA', mime: 'image/jpeg' }); // late: ignored
});
