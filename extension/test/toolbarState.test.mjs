import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  ICON_SIZES, TOOLBAR_STATES, initialToolbar, reduceToolbar, toolbarState, toolbarView,
} from '../src/lib/toolbarState.js';

const run = (events, start = initialToolbar()) => events.reduce(reduceToolbar, start);

test('a fresh model is on', () => {
  assert.equal(toolbarState(initialToolbar()), 'on');
  assert.equal(toolbarState(initialToolbar({ paused: true })), 'paused');
});

test('one click pauses, the next resumes', () => {
  const once = run([{ type: 'toggle' }]);
  assert.equal(toolbarState(once), 'paused');
  assert.equal(toolbarState(reduceToolbar(once, { type: 'toggle' })), 'on');
});

test('jobs make it working, with a count; ends bring it back', () => {
  let m = run([{ type: 'job-started' }, { type: 'job-started' }]);
  assert.equal(toolbarState(m), 'working');
  assert.equal(toolbarView(m).badgeText, '2');
  m = run([{ type: 'job-ended', ok: true }, { type: 'job-ended', ok: true }, { type: 'job-ended', ok: true }], m);
  assert.equal(m.jobs, 0);
  assert.equal(toolbarState(m), 'on');
});

test('a failure shows error until the daemon answers', () => {
  let m = run([{ type: 'job-started' }, { type: 'job-ended', ok: false, error: 'the daemon is down' }]);
  assert.equal(toolbarState(m), 'error');
  assert.match(toolbarView(m).title, /daemon is down/);
  assert.equal(toolbarView(m).badgeText, '!');
  m = reduceToolbar(m, { type: 'job-started' });
  assert.equal(toolbarState(m), 'working', 'working shows over an old error');
  m = run([{ type: 'job-ended', ok: true }], m);
  assert.equal(toolbarState(m), 'on');
  m = run([{ type: 'error', message: 'x' }, { type: 'ok' }], m);
  assert.equal(toolbarState(m), 'on');
});

test('paused wins over working and error', () => {
  const m = run([{ type: 'job-started' }, { type: 'error', message: 'x' }, { type: 'pause' }]);
  assert.equal(toolbarState(m), 'paused');
  assert.equal(toolbarState(reduceToolbar(m, { type: 'resume' })), 'working');
});

test('a restarted worker has no running job', () => {
  const m = run([{ type: 'job-started' }, { type: 'restart' }]);
  assert.equal(m.jobs, 0);
});

test('unknown events change nothing; the model is never mutated', () => {
  const m = initialToolbar();
  const frozen = Object.freeze({ ...m });
  assert.deepEqual(reduceToolbar(frozen, { type: 'nonsense' }), m);
  reduceToolbar(frozen, { type: 'toggle' });
});

test('every state has an icon per size, a colour and a title', () => {
  const models = {
    on: initialToolbar(), paused: initialToolbar({ paused: true }),
    working: run([{ type: 'job-started' }]), error: run([{ type: 'error', message: 'e' }]),
  };
  for (const state of TOOLBAR_STATES) {
    const view = toolbarView(models[state]);
    assert.equal(view.state, state);
    assert.deepEqual(Object.keys(view.icon).map(Number), [...ICON_SIZES]);
    assert.equal(view.icon[16], `icons/${state}-16.png`);
    assert.match(view.badgeColor, /^#[0-9a-f]{6}$/);
    assert.ok(view.title.startsWith('LowKey'));
  }
  assert.equal(toolbarView(models.on).badgeText, '');
  assert.equal(toolbarView(models.paused).badgeText, 'off');
});
