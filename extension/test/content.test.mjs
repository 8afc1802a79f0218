// content/guard.js (the content script's synchronous decisions in the events) and
// content/frameState.js (whether its frame is on an enabled site), with a fake window.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { flush, importBuilt } from './helpers.mjs';
import { INSTANCE_KEY, startContent } from '../src/content/guard.js';

const { followFrameState } = await importBuilt('content/frameState.js');

class HTMLInputElement {
  constructor(files) {
    this.type = 'file';
    this.files = files;
    this._value = 'C:\\fakepath\\x';
  }

  set value(v) {
    this._value = v;
    if (v === '') this.files = [];
  }

  get value() { return this._value; }
}

function fakeWindow() {
  const listeners = {};
  return {
    listeners,
    HTMLInputElement,
    addEventListener: (type, fn, capture) => { listeners[type] = { fn, capture }; },
    removeEventListener: (type, fn, capture) => {
      if (listeners[type]?.fn === fn && listeners[type].capture === capture) delete listeners[type];
    },
  };
}

// The guard in a fake window; the controller records what it is handed.
function load({ paused = false, global = {}, alive = true } = {}) {
  const win = fakeWindow();
  const calls = [];
  let made = 0;
  const api = { runtime: { id: alive ? 'lowkey' : undefined } };
  const stopped = [];
  const instance = startContent({
    global, win, api,
    followState: ({ state }) => {
      state.paused = paused;
      return { stop: () => stopped.push(true) };
    },
    makeController: () => {
      made += 1;
      return new Proxy({}, { get: (_, method) => (...args) => calls.push([method, ...args]) });
    },
  });
  const event = (target, extra = {}) => ({
    stopped: false, prevented: false,
    composedPath: () => [target],
    stopImmediatePropagation() { this.stopped = true; },
    preventDefault() { this.prevented = true; },
    ...extra,
  });
  return { listeners: win.listeners, calls, event, instance, global, stopped, made: () => made, api };
}

const photo = { type: 'image/jpeg', name: 'a.jpg' };
const pdf = { type: 'application/pdf', name: 'a.pdf' };

test('the guard listens in the capture phase on window for the four events', () => {
  const c = load();
  assert.deepEqual(Object.keys(c.listeners).sort(), ['change', 'drop', 'input', 'paste']);
  for (const { capture } of Object.values(c.listeners)) assert.equal(capture, true);
  assert.equal(c.made(), 0, 'the controller is made on the first photo only');
});

test('a drop of photos on a file input is hidden from the page\'s drop listeners, not cancelled', () => {
  const c = load();
  const input = new HTMLInputElement([]);
  const drop = c.event(input, { dataTransfer: { files: [photo], types: ['Files'] } });
  c.listeners.drop.fn(drop);
  assert.equal(drop.stopped, true);
  assert.equal(drop.prevented, false); // the browser still fills the input (input/change held)
  const other = c.event(input, { dataTransfer: { files: [pdf], types: ['Files'] } });
  c.listeners.drop.fn(other);
  assert.equal(other.stopped, false);
  // a drop elsewhere is held and handed over
  const zone = {};
  const held = c.event(zone, { dataTransfer: { files: [photo], types: ['Files', 'text/plain'], getData: () => 'x' } });
  c.listeners.drop.fn(held);
  assert.equal(held.stopped && held.prevented, true);
  assert.deepEqual(c.calls[0].slice(0, 4), ['fromDrop', zone, [photo], [['text/plain', 'x']]]);
});

test('a newer choice the page may have releases the held one at once', async () => {
  const c = load();
  const input = new HTMLInputElement([photo]);
  const first = c.event(input);
  c.listeners.change.fn(first);
  assert.equal(first.stopped, true);
  assert.equal(input.value, '');
  await flush();
  assert.equal(c.calls[0][0], 'fromInput');
  // The user now picks a PDF: it goes to the page, and the photo's batch is released.
  input.files = [pdf];
  const second = c.event(input);
  c.listeners.change.fn(second);
  assert.equal(second.stopped, false);
  await flush();
  assert.deepEqual(c.calls.map(([m]) => m), ['fromInput', 'release']);
  assert.equal(c.calls[1][1], input);
  // The PDF's own second event passes too (nothing held any more).
  const third = c.event(input);
  c.listeners.input.fn(third);
  assert.equal(third.stopped, false);
  assert.equal(c.made(), 1);
});

test('a choice made while paused releases a held one', async () => {
  const c = load();
  const input = new HTMLInputElement([photo]);
  c.listeners.input.fn(c.event(input));
  await flush();
  const token = c.calls[0][3];
  assert.equal(typeof token, 'object');
  c.instance.state.paused = true;
  input.files = [{ type: 'image/png', name: 'b.png' }];
  const again = c.event(input);
  c.listeners.input.fn(again);
  assert.equal(again.stopped, false); // paused: the page gets the user's newer choice
  await flush();
  assert.deepEqual(c.calls.map(([m]) => m), ['fromInput', 'release']);
});

test('until its frame is known, a photo is held (fail safe)', () => {
  const win = fakeWindow();
  const calls = [];
  startContent({
    global: {}, win, api: { runtime: { id: 'lowkey' } },
    followState: () => ({ stop() {} }), // never decides
    makeController: () => ({ fromInput: (...args) => calls.push(args) }),
  });
  const input = new HTMLInputElement([photo]);
  const event = { composedPath: () => [input], stopImmediatePropagation() { this.stopped = true; } };
  win.listeners.change.fn(event);
  assert.equal(event.stopped, true);
  assert.equal(calls.length, 1);
});

test('injected twice: the live one stays; one whose extension is gone is replaced', () => {
  const global = {};
  const first = load({ global });
  const again = load({ global });
  assert.equal(again.instance, first.instance, 'a second injection into a live frame does nothing');
  assert.deepEqual(Object.keys(again.listeners), [], 'and adds no listeners');
  // The extension was reloaded (Chromium keeps the old script, cut off: runtime.id undefined).
  first.api.runtime.id = undefined;
  const fresh = load({ global });
  assert.notEqual(fresh.instance, first.instance);
  assert.deepEqual(Object.keys(first.listeners), [], 'the old one stopped listening');
  assert.deepEqual(first.stopped, [true]);
  assert.equal(global[INSTANCE_KEY], fresh.instance);
  assert.equal(Object.keys(fresh.listeners).length, 4);
});

// -- frameState ------------------------------------------------------------------------------

function frameApi({ stored = {}, top, failStorage = false } = {}) {
  const sent = [];
  const changed = [];
  return {
    sent, changed,
    runtime: {
      sendMessage: async (message) => {
        sent.push(message.type);
        if (message.type === 'frame-top') return top instanceof Error ? Promise.reject(top) : { top };
        return { injected: true };
      },
    },
    storage: {
      local: { get: async () => (failStorage ? Promise.reject(new Error('gone')) : stored) },
      onChanged: { addListener: (fn) => changed.push(fn), removeListener: (fn) => changed.splice(changed.indexOf(fn), 1) },
    },
  };
}

function frameWin(origin, { parent } = {}) {
  const w = { location: { origin, href: `${origin}/` } };
  w.parent = parent ?? w;
  return w;
}

test('a page is decided by its own origin, without asking the background', async () => {
  for (const [origin, enabled] of [['https://example.com', true], ['https://other.net', false]]) {
    const api = frameApi({ stored: { sites: ['example.com'] } });
    const state = { enabled: true, paused: false };
    await followFrameState({ api, win: frameWin(origin), state }).decided;
    assert.equal(state.enabled, enabled, origin);
    assert.deepEqual(api.sent, []);
  }
});

test('Chromium: a frame reads its page\'s origin from ancestorOrigins, without waking the background', async () => {
  const page = { location: { get origin() { throw new Error('cross-origin'); } } };
  page.parent = page;
  const widget = frameWin('https://upload.widgets.net', { parent: page });
  widget.location.ancestorOrigins = ['https://www.example.com'];
  const api = frameApi({ stored: { sites: ['example.com'] } });
  const state = { enabled: false, paused: false };
  await followFrameState({ api, win: widget, state }).decided;
  assert.equal(state.enabled, true);
  await flush();
  assert.deepEqual(api.sent, ['frame-main-world']);
  const other = frameWin('https://ads.net', { parent: page });
  other.location.ancestorOrigins = ['https://news.other.net'];
  const quiet = frameApi({ stored: { sites: ['example.com'] } });
  const s2 = { enabled: true, paused: false };
  await followFrameState({ api: quiet, win: other, state: s2 }).decided;
  assert.equal(s2.enabled, false);
  assert.deepEqual(quiet.sent, [], 'an ad frame elsewhere sends nothing');
});

test('a frame of another origin is decided by its page, and gets the page-world script', async () => {
  const page = { location: { get origin() { throw new Error('cross-origin'); } } };
  page.parent = page;
  const widget = frameWin('https://upload.widgets.net', { parent: page });
  const api = frameApi({ stored: { sites: ['example.com'] }, top: 'https://www.example.com/me' });
  const state = { enabled: true, paused: false };
  await followFrameState({ api, win: widget, state }).decided;
  assert.equal(state.enabled, true);
  await flush();
  assert.deepEqual(api.sent, ['frame-top', 'frame-main-world']);
  // The user removes the site: the widget lets photos through, as the page does.
  const stored = { sites: ['other.net'] };
  api.storage.local.get = async () => stored;
  api.changed[0]({ sites: { newValue: stored.sites } }, 'local');
  await flush();
  await flush();
  assert.equal(state.enabled, false);
  // The same widget in a page that is not enabled; and with no answer from the background.
  const elsewhere = frameApi({ stored: { sites: ['example.com'] }, top: 'https://news.other.net/' });
  const s2 = { enabled: true, paused: false };
  await followFrameState({ api: elsewhere, win: widget, state: s2 }).decided;
  assert.equal(s2.enabled, false);
  assert.deepEqual(elsewhere.sent, ['frame-top']);
  const silent = frameApi({ stored: { sites: ['example.com'] }, top: new Error('no receiver') });
  const s3 = { enabled: true, paused: false };
  await followFrameState({ api: silent, win: widget, state: s3 }).decided;
  assert.equal(s3.enabled, true, 'its page unknown: protected');
});

test('settings that cannot be read leave the frame protected; stop removes the listener', async () => {
  const api = frameApi({ failStorage: true });
  const state = { enabled: true, paused: false };
  const errors = [];
  const original = console.error;
  console.error = (...args) => errors.push(args);
  try {
    const follower = followFrameState({ api, win: frameWin('https://other.net'), state });
    await follower.decided;
    assert.equal(state.enabled, true);
    assert.equal(errors.length, 1);
    follower.stop();
    assert.equal(api.changed.length, 0);
  } finally {
    console.error = original;
  }
});
