import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describe } from '../src/content/indicator.js';

test('the indicator says what happens to each photo', () => {
  assert.equal(describe({ state: 'protecting', phase: 'attack', percent: 42.4 }), 'protecting 42%');
  assert.equal(describe({ state: 'queued' }), 'waiting to be protected');
  assert.match(describe({ state: 'failed', error: { code: 'daemon-down', message: '' } }), /not running\. Nothing was uploaded/);
  assert.match(describe({ state: 'failed', error: { code: 'timeout', message: 'took 330 s' } }), /took 330 s/);
  assert.match(describe({ state: 'no-face' }), /no face/);
  assert.match(describe({ state: 'cancelled' }), /not uploaded/);
});

test('"Upload original" wants a real pointer click on a row visible for 500 ms', async () => {
  const { originalClickAllowed, ORIGINAL_DELAY_MS } = await import('../src/content/indicator.js');
  assert.equal(ORIGINAL_DELAY_MS, 500);
  const click = { isTrusted: true, detail: 1 };
  assert.equal(originalClickAllowed(click, 1000, 1500), true);
  assert.equal(originalClickAllowed(click, 1000, 1499), false); // shown the moment before
  assert.equal(originalClickAllowed(click, null, 5000), false); // hidden now
  assert.equal(originalClickAllowed({ isTrusted: true, detail: 0 }, 0, 5000), false); // Enter/Space
  assert.equal(originalClickAllowed({ isTrusted: false, detail: 1 }, 0, 5000), false); // a script's
  assert.equal(originalClickAllowed(undefined, 0, 5000), false);
});

test('an image LowKey cannot protect says so, and what the user may do', () => {
  assert.equal(describe({ state: 'failed', error: { code: 'unsupported-format', message: 'LowKey cannot protect this format (AVIF): upload it as it is, or cancel' } }),
    'LowKey cannot protect this format (AVIF): upload it as it is, or cancel. Nothing was uploaded.');
});

test('a protected photo says whether recognisers never attacked still match it', () => {
  const judges = ['dlib', 'openface'];
  assert.equal(describe({ state: 'protected', recognition: { recognisedBy: [], judges } }),
    'protected. Not recognised by dlib, openface');
  assert.equal(describe({ state: 'protected', recognition: { recognisedBy: ['dlib', 'openface'], judges } }),
    'uploaded with LowKey\'s change. Still recognised by dlib, openface');
  // An older daemon says nothing about it: neither does the indicator.
  assert.equal(describe({ state: 'protected' }), 'protected');
  assert.equal(describe({ state: 'protected', recognition: null }), 'protected');
});
