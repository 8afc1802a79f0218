// content.js is a classic script (content scripts cannot be modules), so it carries its own
// copy of mayBeImage for the synchronous decision in the event; it must be lib/imageType.js's.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import vm from 'node:vm';
import { flush } from './helpers.mjs';
import { mayBeImage } from '../src/lib/imageType.js';

const source = readFileSync(new URL('../src/content.js', import.meta.url), 'utf8');

test('content.js\'s mayBeImage is the library\'s', () => {
  const copy = /\/\/ BEGIN mayBeImage\n([\s\S]*?)\/\/ END mayBeImage/.exec(source)[1];
  const context = vm.createContext({});
  vm.runInContext(`${copy}\nthis.copy = mayBeImage;`, context);
  assert.equal(copy.replace(/\s+/g, ' ').trim(), `function ${mayBeImage.toString().replace(/^function /, '')}`.replace(/\s+/g, ' ').trim()
    .replace(/^function function/, 'function'));
  const files = [
    { type: 'image/jpeg', name: 'a.jpg' }, { type: '', name: 'a.HEIC' }, { type: 'image/gif', name: 'a.gif' },
    { type: 'application/pdf', name: 'a.pdf' }, { type: '', name: 'a.txt' }, { type: 'application/octet-stream', name: 'x' },
    {}, { type: 'image/svg+xml', name: 'a.svg' }, { type: 'video/mp4', name: 'a.mp4' },
  ];
  for (const file of files) assert.equal(context.copy(file), mayBeImage(file), JSON.stringify(file));
});

test('content.js listens in the capture phase on window for the four events', () => {
  for (const type of ['input', 'change', 'drop', 'paste']) {
    assert.match(source, new RegExp(`window\\.addEventListener\\('${type}', \\w+, true\\)`), type);
  }
});

// content.js run in a fake window (vm): its synchronous decisions in the events.
function loadContent({ paused = false } = {}) {
  const listeners = {};
  const calls = [];
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
  const controller = new Proxy({}, {
    get: (_, method) => (method === 'then' ? undefined : (...args) => calls.push([method, ...args])),
  });
  const shared = {};
  const window = {
    addEventListener: (type, fn, capture) => { listeners[type] = { fn, capture }; },
  };
  const context = vm.createContext({
    window, HTMLInputElement, console, __loadController: () => Promise.resolve({ startController: ({ state }) => { state.paused = paused; shared.state = state; return controller; } }),
    chrome: { runtime: { getURL: (p) => p } },
  });
  const patched = source.replace("import(api.runtime.getURL('content/controller.js'))", '__loadController()');
  assert.notEqual(patched, source);
  vm.runInContext(patched, context);
  const event = (target, extra = {}) => ({
    stopped: false, prevented: false,
    composedPath: () => [target],
    stopImmediatePropagation() { this.stopped = true; },
    preventDefault() { this.prevented = true; },
    ...extra,
  });
  return { listeners, calls, HTMLInputElement, event, shared };
}

const photo = { type: 'image/jpeg', name: 'a.jpg' };
const pdf = { type: 'application/pdf', name: 'a.pdf' };

test('a drop of photos on a file input is hidden from the page\'s drop listeners, not cancelled', async () => {
  const c = loadContent();
  await flush();
  const input = new c.HTMLInputElement([]);
  const drop = c.event(input, { dataTransfer: { files: [photo], types: ['Files'] } });
  c.listeners.drop.fn(drop);
  assert.equal(c.listeners.drop.capture, true);
  assert.equal(drop.stopped, true);
  assert.equal(drop.prevented, false); // the browser still fills the input (input/change held)
  const other = c.event(input, { dataTransfer: { files: [pdf], types: ['Files'] } });
  c.listeners.drop.fn(other);
  assert.equal(other.stopped, false);
});

test('a newer choice the page may have releases the held one at once', async () => {
  const c = loadContent();
  await flush();
  const input = new c.HTMLInputElement([photo]);
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
});

test('a choice made while paused releases a held one', async () => {
  const c = loadContent();
  await flush();
  const input = new c.HTMLInputElement([photo]);
  c.listeners.input.fn(c.event(input));
  await flush();
  const token = c.calls[0][3];
  assert.equal(typeof token, 'object');
  c.shared.state.paused = true;
  input.files = [{ type: 'image/png', name: 'b.png' }];
  const again = c.event(input);
  c.listeners.input.fn(again);
  assert.equal(again.stopped, false); // paused: the page gets the user's newer choice
  await flush();
  assert.deepEqual(c.calls.map(([m]) => m), ['fromInput', 'release']);
});
