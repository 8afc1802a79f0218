// background/protect.js: every request is answered; a message the port cannot carry closes it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakePort, flush, hostFileMessages, importBuilt } from './helpers.mjs';

const natives = [];
const storage = {};
globalThis.chrome = {
  runtime: { connectNative: () => { const p = new FakePort(); natives.push(p); return p; } },
  storage: {
    local: {
      get: async (keys) => Object.fromEntries([keys].flat().filter((k) => k in storage).map((k) => [k, storage[k]])),
      set: async (values) => Object.assign(storage, values),
      remove: async (keys) => { for (const k of [keys].flat()) delete storage[k]; },
    },
    session: { get: async () => ({}), set: async () => {}, remove: async () => {} },
  },
  action: { setIcon: async () => {}, setBadgeText: async () => {}, setBadgeBackgroundColor: async () => {}, setTitle: async () => {} },
};
const { servePort } = await importBuilt('background/protect.js');

function contentPort() {
  const port = new FakePort();
  port.sender = { id: 'x', url: 'https://example.com/' };
  return port;
}

async function until(fn, what) {
  for (let i = 0; i < 500 && !fn(); i += 1) await new Promise((r) => setTimeout(r, 2));
  assert.ok(fn(), what);
}

const protects = () => natives.flatMap((p) => p.posted.filter((m) => m.type === 'protect').map((m) => [p, m]));

async function answerNative(bytes, asked, extra = {}) {
  await until(() => protects().length > asked, 'the host was asked');
  const [port, { id }] = protects().at(-1);
  const { chunks, result } = hostFileMessages(id, bytes, 1 << 20, extra);
  chunks.forEach((c) => port.deliver(c));
  port.deliver(result);
}

test('a result too large for the port is answered too-large, not posted', async () => {
  const port = contentPort();
  servePort(port, { maxPostChars: 16 });
  port.deliver({ type: 'protect', key: 'k1', name: 'a.jpg', mime: 'image/jpeg', data: 'AAAA' });
  await answerNative(new Uint8Array(64), 0);
  await until(() => port.posted.some((m) => m.type === 'error'), 'an answer');
  const error = port.posted.find((m) => m.type === 'error');
  assert.equal(error.key, 'k1');
  assert.equal(error.code, 'too-large');
  assert.ok(!port.posted.some((m) => m.type === 'result'));
  assert.equal(port.disconnected, false);
});

test('a post that fails disconnects the port (the content side fails its photos)', async () => {
  const port = contentPort();
  port.postMessage = function postMessage(message) {
    if (message.type === 'result') throw new Error('Message length exceeded maximum allowed length.');
    this.posted.push(message);
  };
  servePort(port);
  port.deliver({ type: 'protect', key: 'k2', name: 'a.jpg', mime: 'image/jpeg', data: 'AAAA' });
  await answerNative([1, 2, 3], 1);
  await until(() => port.disconnected, 'the port was closed');
});

test('a failure before the native request still answers the content side', async () => {
  const { get } = globalThis.chrome.storage.local;
  globalThis.chrome.storage.local.get = async () => { throw new Error('storage exploded: /home/me/secret'); };
  try {
    const port = contentPort();
    servePort(port);
    port.deliver({ type: 'protect', key: 'k3', name: 'a.jpg', mime: 'image/jpeg', data: 'AAAA' });
    await until(() => port.posted.some((m) => m.key === 'k3'), 'an answer');
    const [answer] = port.posted;
    assert.equal(answer.type, 'error');
    assert.equal(answer.code, 'extension');
    assert.doesNotMatch(answer.message, /exploded|secret/); // the generic words, not the exception's
  } finally {
    globalThis.chrome.storage.local.get = get;
  }
  await flush();
});

test('each photo goes with the preset the user chose; the result says what recognisers made of it', async () => {
  const report = { status: 'protected', faces: [], preset: 'subtle', recognised_by: ['dlib'], judges: ['dlib', 'openface'] };
  for (const [stored, sent] of [[undefined, 'default'], ['subtle', 'subtle'], ['strong', 'default'], ['paper', 'default']]) {
    if (stored === undefined) delete storage.preset;
    else storage.preset = stored;
    const port = contentPort();
    servePort(port);
    const key = `p-${stored}`;
    port.deliver({ type: 'protect', key, name: 'a.jpg', mime: 'image/jpeg', data: 'AAAA' });
    await answerNative([1, 2, 3], protects().length, { report });
    await until(() => port.posted.some((m) => m.type === 'result' && m.key === key), 'the result');
    assert.equal(protects().at(-1)[1].preset, sent, `stored ${stored}`);
    const result = port.posted.find((m) => m.type === 'result');
    assert.deepEqual(result.recognition, { recognisedBy: ['dlib'], judges: ['dlib', 'openface'] });
  }
  delete storage.preset;
  await until(() => (storage.results ?? []).length >= 4, 'the results were recorded');
  assert.deepEqual(storage.results[0].recognition, { recognisedBy: ['dlib'], judges: ['dlib', 'openface'] });
});
