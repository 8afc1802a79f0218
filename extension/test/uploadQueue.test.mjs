import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UploadQueue } from '../src/lib/uploadQueue.js';
import { flush } from './helpers.mjs';

/** A protect function whose calls the test settles by hand. */
function manualProtect() {
  const calls = [];
  const protect = (item, ctx) => new Promise((resolve, reject) => {
    calls.push({ item, ctx, resolve, reject });
    ctx.signal.addEventListener('abort', () => reject(Object.assign(new Error('cancelled'), { code: 'cancelled' })));
  });
  return { protect, calls };
}

const file = (name) => ({ name, type: 'image/jpeg' });
const failure = (code) => Object.assign(new Error(code), { code });

test('one at a time, in order; the batch gets its files in order', async () => {
  const { protect, calls } = manualProtect();
  const queue = new UploadQueue({ protect });
  const batch = queue.addBatch([{ file: file('a'), protectable: true }, { file: file('b'), protectable: true }]);
  assert.equal(calls.length, 1);
  assert.equal(calls[0].item.file.name, 'a');
  assert.deepEqual(queue.items().map((i) => i.state), ['protecting', 'queued']);
  calls[0].ctx.onProgress({ phase: 'attack', percent: 40 });
  assert.equal(queue.items()[0].percent, 40);
  assert.equal(queue.items()[0].phase, 'attack');
  calls[0].resolve(file('A'));
  await flush();
  assert.equal(calls.length, 2);
  assert.equal(calls[1].item.file.name, 'b');
  calls[1].resolve(file('B'));
  const { files, items } = await batch.done;
  assert.deepEqual(files.map((f) => f.name), ['A', 'B']);
  assert.deepEqual(items.map((i) => i.state), ['protected', 'protected']);
  assert.deepEqual(queue.items(), []);
});

test('files that are not photos pass untouched, in their place', async () => {
  const { protect, calls } = manualProtect();
  const queue = new UploadQueue({ protect });
  const pdf = { name: 'doc.pdf', type: 'application/pdf' };
  const batch = queue.addBatch([{ file: pdf, protectable: false }, { file: file('a'), protectable: true }]);
  calls[0].resolve(file('A'));
  const { files } = await batch.done;
  assert.equal(files[0], pdf);
  assert.equal(files[1].name, 'A');
});

test('a batch without photos is settled at once', async () => {
  const queue = new UploadQueue({ protect: () => assert.fail('nothing to protect') });
  const pdf = { name: 'doc.pdf' };
  assert.deepEqual((await queue.addBatch([{ file: pdf, protectable: false }]).done).files, [pdf]);
});

test('no face: the original goes through, and says so', async () => {
  const { protect, calls } = manualProtect();
  const queue = new UploadQueue({ protect });
  const original = file('a');
  const batch = queue.addBatch([{ file: original, protectable: true }]);
  calls[0].reject(failure('no-face'));
  const { files, items } = await batch.done;
  assert.equal(files[0], original);
  assert.equal(items[0].state, 'no-face');
});

test('skipped (paused meanwhile): the original goes through quietly', async () => {
  const { protect, calls } = manualProtect();
  const queue = new UploadQueue({ protect });
  const original = file('a');
  const batch = queue.addBatch([{ file: original, protectable: true }]);
  calls[0].reject(failure('skipped'));
  const { files, items } = await batch.done;
  assert.equal(files[0], original);
  assert.equal(items[0].state, 'passthrough');
});

test('a failure holds the batch until the user chooses: retry', async () => {
  const { protect, calls } = manualProtect();
  const changes = [];
  const queue = new UploadQueue({ protect, onChange: (item) => changes.push(item.state) });
  const batch = queue.addBatch([{ file: file('a'), protectable: true }, { file: file('b'), protectable: true }]);
  let settled = false;
  batch.done.then(() => { settled = true; });
  calls[0].reject(failure('daemon-down'));
  await flush();
  assert.equal(queue.items()[0].state, 'failed');
  assert.equal(queue.items()[0].error.code, 'daemon-down');
  calls[1].resolve(file('B'));
  await flush();
  assert.equal(settled, false, 'the page gets nothing while a photo waits for the user');
  assert.equal(queue.retry(queue.items()[0].id), true);
  assert.equal(calls.length, 3);
  calls[2].resolve(file('A'));
  const { files } = await batch.done;
  assert.deepEqual(files.map((f) => f.name), ['A', 'B']);
  assert.ok(changes.includes('failed'));
});

test('a failure: upload the original this once', async () => {
  const { protect, calls } = manualProtect();
  const queue = new UploadQueue({ protect });
  const original = file('a');
  const batch = queue.addBatch([{ file: original, protectable: true }]);
  calls[0].reject(failure('timeout'));
  await flush();
  const [item] = queue.items();
  assert.equal(queue.useOriginal(item.id), true);
  const { files, items } = await batch.done;
  assert.equal(files[0], original);
  assert.equal(items[0].state, 'original');
});

test('a failure: cancel gives the page nothing', async () => {
  const { protect, calls } = manualProtect();
  const queue = new UploadQueue({ protect });
  const batch = queue.addBatch([{ file: file('a'), protectable: true }]);
  calls[0].reject(failure('internal'));
  await flush();
  queue.cancel(queue.items()[0].id);
  assert.deepEqual((await batch.done).files, []);
});

test('cancelling a running photo aborts it and starts the next', async () => {
  const { protect, calls } = manualProtect();
  const queue = new UploadQueue({ protect });
  const batch = queue.addBatch([{ file: file('a'), protectable: true }, { file: file('b'), protectable: true }]);
  const [first] = queue.items();
  assert.equal(queue.cancel(first.id), true);
  assert.equal(calls[0].ctx.signal.aborted, true);
  await flush();
  assert.equal(calls.length, 2);
  calls[1].resolve(file('B'));
  const { files, items } = await batch.done;
  assert.deepEqual(files.map((f) => f.name), ['B']);
  assert.deepEqual(items.map((i) => i.state), ['cancelled', 'protected']);
  assert.equal(queue.cancel(first.id), false, 'settled items cannot change');
});

test('cancelling a queued photo never starts it; cancelBatch and cancelAll', async () => {
  const { protect, calls } = manualProtect();
  const queue = new UploadQueue({ protect });
  const one = queue.addBatch([{ file: file('a'), protectable: true }]);
  const two = queue.addBatch([{ file: file('b'), protectable: true }, { file: file('c'), protectable: true }]);
  queue.cancelBatch(two.id);
  calls[0].resolve(file('A'));
  assert.deepEqual((await one.done).files.map((f) => f.name), ['A']);
  assert.deepEqual((await two.done).files, []);
  assert.equal(calls.length, 1);
  const three = queue.addBatch([{ file: file('d'), protectable: true }]);
  queue.cancelAll();
  assert.deepEqual((await three.done).files, []);
});

test('a late answer after cancel changes nothing', async () => {
  const calls = [];
  const queue = new UploadQueue({ protect: (item, ctx) => new Promise((resolve) => calls.push(resolve)) });
  const batch = queue.addBatch([{ file: file('a'), protectable: true }]);
  queue.cancel(queue.items()[0].id);
  calls[0](file('A'));
  assert.deepEqual((await batch.done).files, []);
});

test('a protect function that throws at once is a failure, not a crash', async () => {
  const queue = new UploadQueue({ protect: () => { throw failure('internal'); } });
  queue.addBatch([{ file: file('a'), protectable: true }]);
  await flush();
  assert.equal(queue.items()[0].state, 'failed');
});

test('batches are served in the order they came', async () => {
  const { protect, calls } = manualProtect();
  const queue = new UploadQueue({ protect });
  queue.addBatch([{ file: file('a'), protectable: true }]);
  queue.addBatch([{ file: file('b'), protectable: true }]);
  calls[0].reject(failure('busy'));
  await flush();
  assert.equal(calls[1].item.file.name, 'b');
  queue.retry(queue.items()[0].id);
  calls[1].resolve(file('B'));
  await flush();
  assert.equal(calls[2].item.file.name, 'a');
});

test('an image LowKey cannot protect starts failed: the user chooses, there is nothing to retry', async () => {
  const { protect, calls } = manualProtect();
  const queue = new UploadQueue({ protect });
  const avif = { name: 'a.avif', type: 'image/avif' };
  const pdf = { name: 'a.pdf', type: 'application/pdf' };
  const batch = queue.addBatch([
    { file: avif, protectable: false, unsupported: 'AVIF' }, { file: pdf, protectable: false }]);
  assert.equal(calls.length, 0);
  const [first, second] = queue.items();
  assert.equal(first.state, 'failed');
  assert.deepEqual(first.error, { code: 'unsupported-format', message: 'LowKey cannot protect this format (AVIF): upload it as it is, or cancel' });
  assert.equal(second.state, 'passthrough');
  assert.equal(queue.retry(first.id), false);
  let settled = false;
  batch.done.then(() => { settled = true; });
  await flush();
  assert.equal(settled, false); // nothing reaches the page meanwhile, not even the PDF
  assert.equal(queue.useOriginal(first.id), true);
  assert.deepEqual((await batch.done).files, [avif, pdf]);
});

test('what the user reads of an exception is LowKey\'s words, not its text', async () => {
  const { protect, calls } = manualProtect();
  const queue = new UploadQueue({ protect });
  queue.addBatch([{ file: file('a'), protectable: true }]);
  const { error } = console;
  console.error = () => {};
  try {
    calls[0].reject(new TypeError("Cannot read properties of undefined (reading 'data') at chrome-extension://x/y.js"));
    await flush();
  } finally {
    console.error = error;
  }
  const [item] = queue.items();
  assert.equal(item.state, 'failed');
  assert.equal(item.error.code, 'extension');
  assert.doesNotMatch(item.error.message, /undefined|chrome-extension/);
  calls.length = 0;
  queue.retry(item.id);
  calls[0].reject(Object.assign(new Error('took 330 s'), { code: 'timeout' })); // a LowKey code keeps its words
  await flush();
  assert.deepEqual(queue.items()[0].error, { code: 'timeout', message: 'took 330 s' });
});
