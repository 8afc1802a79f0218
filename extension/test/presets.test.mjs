// shared/presets.js: the presets the extension offers and the words that say what each does.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { DEFAULT_PRESET, PRESETS, presetFrom, presetInfo } from '../src/shared/presets.js';

test('default protects, subtle does not, and each says so', () => {
  assert.deepEqual(PRESETS.map((p) => p.name), ['default', 'subtle']);
  assert.equal(DEFAULT_PRESET, 'default');
  assert.equal(presetInfo('default').label,
    'Protects: in our tests, recognisers we never attacked found no protected face among 1,000 strangers; the face looks visibly altered up close');
  assert.equal(presetInfo('subtle').label,
    'Looks unchanged, does NOT protect: in our measurements every recogniser still recognised every face');
  assert.deepEqual(PRESETS.map((p) => p.protects), [true, false]);
  assert.ok(Object.isFrozen(PRESETS) && PRESETS.every(Object.isFrozen));
});

test('a stored choice not offered (paper, the old fast and strong, junk) falls back to the default', () => {
  assert.equal(presetFrom('subtle'), 'subtle');
  for (const value of [undefined, null, '', 'paper', 'fast', 'strong', 'SUBTLE', 3, {}]) {
    assert.equal(presetFrom(value), 'default', String(value));
  }
  assert.equal(presetInfo('strong').name, 'default');
});

test('the words live in shared/presets.js only', () => {
  const label = 'recognisers we never attacked';
  for (const file of ['options.html', 'options.js', 'popup.html', 'popup.js']) {
    const text = readFileSync(new URL(`../src/${file}`, import.meta.url), 'utf8');
    assert.ok(!text.includes(label) && !text.includes('does NOT protect'), file);
  }
});
