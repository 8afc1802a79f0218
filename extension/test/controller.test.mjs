// The content controller with fakes for the page (window), the background link, the indicator
// and the delivery to the page.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { deferred, flush, importBuilt } from './helpers.mjs';

const { startController } = await importBuilt('content/controller.js');

const JPEG = [0xff, 0xd8, 0xff, 0xe0, 0, 16, 74, 70, 73, 70];
const jpeg = (name = 'a.jpg', type = 'image/jpeg') => new File([Uint8Array.from(JPEG)], name, { type });

function setup() {
  const calls = [];
  const link = {
    protect(photo, ctx) {
      const d = deferred();
      calls.push({ photo, ctx, ...d });
      ctx.signal?.addEventListener('abort', () => d.reject(Object.assign(new Error('cancelled'), { code: 'cancelled' })));
      return d.promise;
    },
  };
  const drawn = [];
  let actions;
  const delivered = [];
  const held = new WeakMap();
  const state = { enabled: true, paused: false, decided: Promise.resolve() };
  const api = {};
  const win = { addEventListener() {}, document: null };
  const controller = startController({ api, state, ours: new WeakSet(), held, outputs: new WeakSet() }, {
    win, link,
    makeIndicator: (a) => {
      actions = a;
      return { update: (item) => drawn.push(item), notice: (text) => drawn.push({ notice: text }) };
    },
    deliverToInput: (input, files) => delivered.push({ input, files }),
  });
  return { controller, calls, drawn, delivered, held, state, actions: () => actions };
}

const reply = () => ({ data: Buffer.from(Uint8Array.from([...JPEG, 1, 2, 3])).toString('base64'), mime: 'image/jpeg' });

async function until(fn) {
  for (let i = 0; i < 200 && !fn(); i += 1) await flush();
  assert.ok(fn(), 'condition never held');
}

test('a choice replaced by one the page gets as it is never lands on the input', async () => {
  const s = setup();
  const input = {};
  const token = {};
  s.held.set(input, token);
  const running = s.controller.fromInput(input, [jpeg()], token);
  await until(() => s.calls.length === 1);
  // content.js: the user picked a PDF (or paused) meanwhile: the hold is forgotten at once.
  s.held.delete(input);
  s.controller.release(input);
  s.calls[0].resolve(reply()); // too late: the batch was cancelled
  await running;
  assert.deepEqual(s.delivered, []);
  assert.ok(s.drawn.some((item) => item.state === 'cancelled'));
  assert.equal(s.calls[0].ctx.signal.aborted, true);
});

test('released before its files were even read: nothing is delivered', async () => {
  const s = setup();
  const input = {};
  const token = {};
  s.held.set(input, token);
  const running = s.controller.fromInput(input, [jpeg()], token);
  s.held.delete(input);
  s.controller.release(input);
  await flush();
  for (const call of s.calls) call.resolve(reply());
  await running;
  assert.deepEqual(s.delivered, []);
});

test('a newer photo choice cancels the older one; only the newer reaches the input', async () => {
  const s = setup();
  const input = {};
  const first = {};
  s.held.set(input, first);
  const one = s.controller.fromInput(input, [jpeg('one.jpg')], first);
  await until(() => s.calls.length === 1);
  const second = {};
  s.held.set(input, second);
  const two = s.controller.fromInput(input, [jpeg('two.jpg')], second);
  await until(() => s.calls.length === 2);
  s.calls[0].resolve(reply());
  s.calls[1].resolve(reply());
  await Promise.all([one, two]);
  assert.equal(s.delivered.length, 1);
  assert.deepEqual(s.delivered[0].files.map((f) => f.name), ['two.jpg']);
  assert.equal(s.held.has(input), false);
});

test('the protected file keeps the original\'s type exactly, even empty', async () => {
  const s = setup();
  const input = {};
  const token = {};
  s.held.set(input, token);
  const running = s.controller.fromInput(input, [jpeg('IMG_1', '')], token);
  await until(() => s.calls.length === 1);
  s.calls[0].resolve(reply());
  await running;
  const [file] = s.delivered[0].files;
  assert.equal(file.type, '');
  assert.equal(file.name, 'IMG_1');
});

test('an image LowKey cannot protect waits for the user; a PDF passes silently', async () => {
  const s = setup();
  const input = {};
  const token = {};
  s.held.set(input, token);
  const avif = new File([Uint8Array.from([0, 0, 0, 28, ...Buffer.from('ftypavif'), 0, 0, 0, 0])], 'a.avif', { type: 'image/avif' });
  const pdf = new File(['%PDF-1.7\n'], 'a.pdf', { type: 'application/pdf' });
  const running = s.controller.fromInput(input, [avif, pdf], token);
  await until(() => s.drawn.some((item) => item.state === 'failed'));
  const failed = s.drawn.find((item) => item.state === 'failed');
  assert.equal(failed.error.code, 'unsupported-format');
  assert.equal(failed.error.message, 'LowKey cannot protect this format (AVIF): upload it as it is, or cancel');
  assert.equal(s.calls.length, 0); // never sent for protection
  await flush();
  assert.deepEqual(s.delivered, []); // nothing, not even the PDF, until the user chooses
  assert.equal(s.actions().onRetry(failed.id), false); // nothing to retry
  assert.equal(s.actions().onOriginal(failed.id), true);
  await running;
  assert.deepEqual(s.delivered[0].files.map((f) => f.name), ['a.avif', 'a.pdf']);
  assert.ok(!s.drawn.some((item) => item.file?.name === 'a.pdf' && item.state !== 'passthrough'));
});

test('photos held before the frame was known go to the page as they are when it is not enabled', async () => {
  const s = setup();
  let decide;
  s.state.decided = new Promise((resolve) => { decide = resolve; });
  const input = {};
  const token = {};
  s.held.set(input, token);
  const file = jpeg();
  const running = s.controller.fromInput(input, [file], token);
  await flush();
  assert.equal(s.calls.length, 0, 'nothing is sent before the frame is known');
  s.state.enabled = false; // frameState: not an enabled site
  decide();
  await running;
  assert.equal(s.calls.length, 0, 'never protected');
  assert.deepEqual(s.delivered.map((d) => d.files), [[file]]);
  // Known and enabled: protected as ever.
  const t = setup();
  t.state.decided = Promise.resolve();
  const other = {};
  const second = {};
  t.held.set(other, second);
  const done = t.controller.fromInput(other, [jpeg()], second);
  await until(() => t.calls.length === 1);
  t.calls[0].resolve(reply());
  await done;
  assert.equal(t.delivered.length, 1);
  assert.notEqual(t.delivered[0].files[0], file);
});

test('the indicator hears what recognisers never attacked made of the protected photo', async () => {
  const s = setup();
  const input = {};
  const token = {};
  s.held.set(input, token);
  const done = s.controller.fromInput(input, [jpeg()], token);
  await until(() => s.calls.length === 1);
  const recognition = { recognisedBy: ['dlib'], judges: ['dlib', 'openface'] };
  s.calls[0].resolve({ ...reply(), recognition });
  await done;
  const last = s.drawn.at(-1); // the row as the indicator last drew it
  assert.equal(last.state, 'protected');
  assert.deepEqual(last.recognition, recognition);
  assert.equal(last.output, s.delivered[0].files[0]);
});
