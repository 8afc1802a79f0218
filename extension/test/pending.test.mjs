// lib/pending.js: the waiting-request table NativeClient and BackgroundLink share.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LowKeyError } from '../src/lib/messages.js';
import { PendingRequests } from '../src/lib/pending.js';

function table({ cancelled = [], empties = [] } = {}) {
  return new PendingRequests({
    timeoutError: (entry) => new LowKeyError('timeout', `${entry.id} was silent`),
    cancelRemote: (entry) => cancelled.push(entry.id),
    onEmpty: () => empties.push(true),
  });
}

function waiting(pending, id, options = {}) {
  let entry;
  const answer = new Promise((resolve, reject) => {
    entry = pending.add(id, { resolve, reject, timeoutMs: 50, ...options });
  });
  return { entry, answer };
}

test('a request settles once; the table empties and says so', async () => {
  const empties = [];
  const pending = table({ empties });
  const { entry, answer } = waiting(pending, 'a', { type: 'hello' });
  assert.deepEqual(pending.ids, ['a']);
  assert.equal(pending.get('a').type, 'hello'); // the caller's fields are kept
  pending.settle(entry, null, 1);
  pending.settle(entry, new Error('late'));
  assert.equal(await answer, 1);
  assert.equal(pending.size, 0);
  assert.equal(pending.get('a'), undefined);
  assert.equal(empties.length, 1);
  assert.throws(() => { pending.add('b', { resolve() {}, reject() {}, timeoutMs: 50 }); pending.add('b', {}); }, /already in flight/);
  pending.failAll(new Error('closed'));
});

test('silence times a request out and cancels it remotely; a touch restarts the count', async () => {
  const cancelled = [];
  const pending = table({ cancelled });
  const { entry, answer } = waiting(pending, 'a');
  const started = Date.now();
  for (let i = 0; i < 3; i += 1) {
    await new Promise((r) => setTimeout(r, 30));
    pending.touch(entry);
  }
  await assert.rejects(answer, { code: 'timeout', message: 'a was silent' });
  assert.ok(Date.now() - started >= 130);
  assert.deepEqual(cancelled, ['a']);
});

test('a held request no longer times out', async () => {
  const pending = table();
  const { entry, answer } = waiting(pending, 'a');
  pending.hold(entry);
  pending.touch(entry); // a late sign of life does not restart the timer
  await new Promise((r) => setTimeout(r, 80));
  pending.settle(entry, null, 'checked');
  assert.equal(await answer, 'checked');
});

test('aborting cancels remotely and fails with cancelled; failAll fails the rest', async () => {
  const cancelled = [];
  const pending = table({ cancelled });
  const controller = new AbortController();
  const a = waiting(pending, 'a', { signal: controller.signal });
  const b = waiting(pending, 'b');
  controller.abort();
  await assert.rejects(a.answer, { code: 'cancelled' });
  assert.deepEqual(cancelled, ['a']);
  pending.failAll(new LowKeyError('disconnected', 'gone'));
  await assert.rejects(b.answer, { code: 'disconnected' });
  assert.deepEqual(cancelled, ['a']); // a lost port cancels nothing remotely
  assert.equal(pending.size, 0);
});
