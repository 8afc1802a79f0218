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
