import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NativeClient, disconnectError } from '../src/lib/nativeClient.js';
import { fakeConnect, flush, hostFileMessages } from './helpers.mjs';

function client(options = {}) {
  const fake = fakeConnect();
  const native = new NativeClient({ connect: fake.connect, idleCloseMs: 0, ...options });
  return { native, ...fake };
}

test('a request has an id and type; its answer resolves it', async () => {
  const { native, ports } = client();
  const answer = native.request('status');
  const [sent] = ports[0].posted;
  assert.equal(sent.type, 'status');
  assert.match(sent.id, /^status-/);
  ports[0].deliver({ id: sent.id, type: 'status', daemon: { state: 'ready' }, status: null });
  assert.equal((await answer).daemon.state, 'ready');
  assert.deepEqual(native.pendingIds, []);
});

test('ids are unique, answers go to their own request', async () => {
  const { native, ports } = client();
  const a = native.request('status');
  const b = native.request('hello');
  const [ra, rb] = ports[0].posted;
  assert.notEqual(ra.id, rb.id);
  ports[0].deliver({ id: rb.id, type: 'hello', version: '1', protocol: 1, daemon: {} });
  ports[0].deliver({ id: ra.id, type: 'status', daemon: {}, status: null });
  assert.equal((await a).type, 'status');
  assert.equal((await b).type, 'hello');
  assert.equal(ports.length, 1, 'one port for both');
});

test('a host error rejects with its code', async () => {
  const { native, ports } = client();
  const answer = native.request('pause');
  ports[0].deliver({ id: ports[0].posted[0].id, type: 'error', code: 'daemon-down', message: 'down' });
  await assert.rejects(answer, { code: 'daemon-down', message: 'down' });
});

test('protect: progress, chunks, checked result', async () => {
  const { native, ports } = client();
  const progress = [];
  const photo = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9]);
  const answer = native.protect({ name: 'a.jpg', mime: 'image/jpeg', data: 'AAAA' },
    { onProgress: (p) => progress.push(p.phase) });
  const { id } = ports[0].posted[0];
  assert.deepEqual(ports[0].posted[0], { id, type: 'protect', name: 'a.jpg', mime: 'image/jpeg', data: 'AAAA' });
  const { chunks, result } = hostFileMessages(id, photo, 4);
  ports[0].deliver({ id, type: 'progress', phase: 'detect', percent: 5 });
  ports[0].deliver({ id, type: 'progress', phase: 'attack', percent: 50 });
  for (const chunk of chunks) ports[0].deliver(chunk);
  ports[0].deliver(result);
  const done = await answer;
  assert.deepEqual(done.bytes, photo);
  assert.equal(done.result.sha256, result.sha256);
  assert.deepEqual(progress, ['detect', 'attack']);
});

test('protect: a bad checksum fails, and the file is never given', async () => {
  const { native, ports } = client();
  const answer = native.protect({ name: 'a.jpg', mime: 'image/jpeg', data: 'AAAA' });
  const { id } = ports[0].posted[0];
  const { chunks, result } = hostFileMessages(id, [1, 2, 3], 4);
  for (const chunk of chunks) ports[0].deliver(chunk);
  ports[0].deliver({ ...result, sha256: 'f'.repeat(64) });
  await assert.rejects(answer, { code: 'integrity' });
});

test('protect: an out-of-order chunk fails at once and cancels the job in the host', async () => {
  const { native, ports } = client();
  const answer = native.protect({ name: 'a.jpg', mime: 'image/jpeg', data: 'AAAA' });
  const { id } = ports[0].posted[0];
  const { chunks } = hostFileMessages(id, [1, 2, 3, 4, 5, 6, 7, 8, 9], 4);
  ports[0].deliver(chunks[1]);
  await assert.rejects(answer, { code: 'integrity' });
  assert.deepEqual(ports[0].posted.slice(1).map((m) => [m.type, m.target]), [['cancel', id]]);
});

test('chunks of two requests interleave, each assembled on its own', async () => {
  const { native, ports } = client();
  const a = native.protect({ name: 'a.jpg', mime: 'image/jpeg', data: 'AAAA' });
  const b = native.protect({ name: 'b.jpg', mime: 'image/jpeg', data: 'AAAA' });
  const [ia, ib] = ports[0].posted.map((m) => m.id);
  const ma = hostFileMessages(ia, [1, 1, 1, 1, 1], 2);
  const mb = hostFileMessages(ib, [2, 2, 2, 2, 2], 2);
  for (let i = 0; i < 3; i += 1) {
    ports[0].deliver(mb.chunks[i]);
    ports[0].deliver(ma.chunks[i]);
  }
  ports[0].deliver(ma.result);
  ports[0].deliver(mb.result);
  assert.deepEqual((await a).bytes, Uint8Array.from([1, 1, 1, 1, 1]));
  assert.deepEqual((await b).bytes, Uint8Array.from([2, 2, 2, 2, 2]));
});

test('a disconnect fails every pending request with the reason; the next request reconnects', async () => {
  const { native, ports } = client();
  const a = native.request('status');
  const b = native.protect({ name: 'a.jpg', mime: 'image/jpeg', data: 'AAAA' });
  ports[0].drop('Native host has exited.');
  await assert.rejects(a, { code: 'disconnected', message: /Native host has exited/ });
  await assert.rejects(b, { code: 'disconnected' });
  assert.equal(native.connected, false);
  const c = native.request('status');
  assert.equal(ports.length, 2);
  ports[1].deliver({ id: ports[1].posted[0].id, type: 'status', daemon: {}, status: null });
  assert.equal((await c).type, 'status');
});

test('a host that is not installed is host-missing', async () => {
  const { native, ports } = client();
  const a = native.request('hello');
  ports[0].drop('Specified native messaging host not found.');
  await assert.rejects(a, { code: 'host-missing' });
  assert.equal(disconnectError('No such native application org.lowkey.native_host').code, 'host-missing');
});

test('messages from an old port are ignored', async () => {
  const { native, ports } = client();
  const a = native.request('status');
  const oldId = ports[0].posted[0].id;
  ports[0].drop();
  await assert.rejects(a, { code: 'disconnected' });
  const b = native.request('status', {}, { timeoutMs: 50 });
  ports[0].deliver({ id: oldId, type: 'status', daemon: {}, status: null });
  ports[0].deliver({ id: ports[1].posted[0].id, type: 'status', daemon: {}, status: null });
  await assert.rejects(b, { code: 'timeout' });
});

test('a silent request times out; a protect one is cancelled in the host', async () => {
  const { native, ports } = client();
  const started = Date.now();
  const answer = native.protect({ name: 'a.jpg', mime: 'image/jpeg', data: 'AAAA' }, { timeoutMs: 60 });
  const { id } = ports[0].posted[0];
  await assert.rejects(answer, { code: 'timeout' });
  assert.ok(Date.now() - started >= 55);
  assert.deepEqual(ports[0].posted[1], { id: ports[0].posted[1].id, type: 'cancel', target: id });
  assert.deepEqual(native.pendingIds, []);
});

test('progress keeps a request alive past its timeout', async () => {
  const { native, ports } = client();
  const answer = native.request('protect', { name: 'a', mime: 'image/png', data: 'AAAA' }, { timeoutMs: 80 });
  const { id } = ports[0].posted[0];
  for (let i = 0; i < 4; i += 1) {
    await new Promise((r) => setTimeout(r, 40));
    ports[0].deliver({ id, type: 'progress', phase: 'attack', percent: i * 10 });
  }
  const { chunks, result } = hostFileMessages(id, [7], 4);
  chunks.forEach((c) => ports[0].deliver(c));
  ports[0].deliver(result);
  assert.deepEqual((await answer).bytes, Uint8Array.from([7]));
});

test('aborting cancels: the request fails cancelled and the host is told', async () => {
  const { native, ports } = client();
  const controller = new AbortController();
  const answer = native.protect({ name: 'a.jpg', mime: 'image/jpeg', data: 'AAAA' }, { signal: controller.signal });
  controller.abort();
  await assert.rejects(answer, { code: 'cancelled' });
  assert.equal(ports[0].posted[1].type, 'cancel');
  assert.equal(ports[0].posted[1].target, ports[0].posted[0].id);
  // a late answer to the cancelled request is harmless
  ports[0].deliver({ id: ports[0].posted[0].id, type: 'error', code: 'cancelled', message: 'cancelled' });
  await flush();
});

test('a stray message is reported, not thrown', async () => {
  const events = [];
  const { native, ports } = client({ onEvent: (e) => events.push(e.type) });
  const a = native.request('status');
  ports[0].deliver({ id: 'nobody', type: 'status' });
  ports[0].deliver({ id: null, type: 'error', code: 'bad-message', message: 'x' });
  ports[0].deliver({ id: ports[0].posted[0].id, type: 'status', daemon: {}, status: null });
  await a;
  assert.deepEqual(events, ['connected', 'stray', 'stray']);
});

test('a mismatched answer type is a bad-message error', async () => {
  const { native, ports } = client();
  const a = native.request('pause');
  ports[0].deliver({ id: ports[0].posted[0].id, type: 'resume', paused: false });
  await assert.rejects(a, { code: 'bad-message' });
});

test('the port closes after being idle, and reopens on demand', async () => {
  const { native, ports } = client({ idleCloseMs: 30 });
  const a = native.request('status');
  ports[0].deliver({ id: ports[0].posted[0].id, type: 'status', daemon: {}, status: null });
  await a;
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(ports[0].disconnected, true);
  assert.equal(native.connected, false);
  native.request('status', {}, { timeoutMs: 20 }).catch(() => {});
  assert.equal(ports.length, 2);
  await new Promise((r) => setTimeout(r, 30));
});

test('disconnect() fails what is pending', async () => {
  const { native, ports } = client();
  const a = native.request('status');
  native.disconnect('bye');
  await assert.rejects(a, { code: 'disconnected', message: 'bye' });
  assert.equal(ports[0].disconnected, true);
});

test('a connect that throws fails the request', async () => {
  const native = new NativeClient({ connect: () => { throw new Error('Access to the specified native messaging host is forbidden.'); } });
  await assert.rejects(native.request('hello'), { code: 'host-missing' });
});
