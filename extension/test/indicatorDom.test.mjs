// The indicator in a small fake DOM: it comes back when the page removes it; an image LowKey
// cannot protect offers no retry; "Upload original" ignores key presses and rows not yet shown
// for 500 ms.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Indicator } from '../src/content/indicator.js';

class El {
  constructor(tag) {
    this.tagName = tag.toUpperCase();
    this.children = [];
    this.parent = null;
    this.dataset = {};
    this.style = {};
    this.listeners = {};
    this.hidden = false;
    this.textContent = '';
  }

  append(...nodes) {
    for (const n of nodes) {
      n.parent?.children.splice(n.parent.children.indexOf(n), 1);
      n.parent = this;
      this.children.push(n);
    }
  }

  replaceChildren(...nodes) {
    for (const n of this.children) n.parent = null;
    this.children = [];
    this.append(...nodes);
  }

  remove() {
    if (this.parent) this.parent.children.splice(this.parent.children.indexOf(this), 1);
    this.parent = null;
  }

  get childElementCount() { return this.children.length; }

  get isConnected() {
    let n = this;
    while (n.parent) n = n.parent;
    return n.isDocument === true || (n.host?.isConnected ?? false);
  }

  attachShadow() {
    const root = new El('#shadow');
    root.host = this;
    this.shadowRoot = root;
    return root;
  }

  setAttribute() {}

  addEventListener(type, fn) { (this.listeners[type] ??= []).push(fn); }

  getBoundingClientRect() { return { width: 50, height: 20, top: 500, left: 900, bottom: 520, right: 950 }; }

  click(event) {
    for (const fn of this.listeners.click ?? []) fn({ stopPropagation() {}, ...event });
  }

  find(fn) {
    if (fn(this)) return this;
    for (const c of [...this.children, ...(this.shadowRoot ? [this.shadowRoot] : [])]) {
      const hit = c.find(fn);
      if (hit) return hit;
    }
    return null;
  }
}

function fakeDocument() {
  const doc = new El('#document');
  doc.isDocument = true;
  doc.documentElement = new El('html');
  doc.append(doc.documentElement);
  doc.createElement = (tag) => new El(tag);
  doc.defaultView = { innerWidth: 1280, innerHeight: 800 };
  return doc;
}

const failed = (extra = {}) => ({
  id: 1, file: { name: 'a.avif' }, state: 'failed', protectable: true, percent: 0,
  error: { code: 'daemon-down', message: '' }, ...extra,
});

test('the indicator comes back when the page removed it', () => {
  const doc = fakeDocument();
  const ind = new Indicator(doc, { onCancel() {}, onRetry() {}, onOriginal() {} });
  ind.update({ id: 1, file: { name: 'a.jpg' }, state: 'protecting', percent: 10, phase: 'attack' });
  assert.equal(ind.host.isConnected, true);
  ind.host.remove();
  assert.equal(ind.host.isConnected, false);
  ind.update({ id: 1, file: { name: 'a.jpg' }, state: 'protecting', percent: 20, phase: 'attack' });
  assert.equal(ind.host.isConnected, true);
});

test('an image LowKey cannot protect: upload original or cancel, no retry', () => {
  const doc = fakeDocument();
  const ind = new Indicator(doc, { onCancel() {}, onRetry() {}, onOriginal() {} });
  ind.update(failed({ protectable: false, error: { code: 'unsupported-format', message: 'LowKey cannot protect this format (AVIF): upload it as it is, or cancel' } }));
  const actions = ind.rows.get(1).buttons.children.map((b) => b.dataset.action);
  assert.deepEqual(actions, ['upload-original', 'cancel']);
  clearInterval(ind.rows.get(1).watch);
  ind.update(failed({ id: 2 }));
  assert.deepEqual(ind.rows.get(2).buttons.children.map((b) => b.dataset.action), ['retry', 'upload-original', 'cancel']);
  clearInterval(ind.rows.get(2).watch);
});

test('"Upload original": not from a key press, not before 500 ms of visibility; retry and cancel from keys', async () => {
  const doc = fakeDocument();
  const chosen = [];
  const ind = new Indicator(doc, { onCancel: () => chosen.push('cancel'), onRetry: () => chosen.push('retry'), onOriginal: () => chosen.push('original') });
  ind.update(failed());
  const row = ind.rows.get(1);
  const button = (action) => row.buttons.children.find((b) => b.dataset.action === action);
  try {
    button('upload-original').click({ isTrusted: true, detail: 1 }); // too early
    assert.deepEqual(chosen, []);
    await new Promise((r) => setTimeout(r, 650));
    button('upload-original').click({ isTrusted: true, detail: 0 }); // Enter / Space
    button('upload-original').click({ isTrusted: false, detail: 1 }); // the page's script
    assert.deepEqual(chosen, []);
    ind.panel.hidden = true; // hidden by the page: not visible now
    button('upload-original').click({ isTrusted: true, detail: 1 });
    assert.deepEqual(chosen, []);
    ind.panel.hidden = false;
    await new Promise((r) => setTimeout(r, 650));
    button('upload-original').click({ isTrusted: true, detail: 1 });
    assert.deepEqual(chosen, ['original']);
    button('retry').click({ isTrusted: true, detail: 0 });
    button('cancel').click({ isTrusted: true, detail: 0 });
    assert.deepEqual(chosen, ['original', 'retry', 'cancel']);
  } finally {
    clearInterval(row.watch);
  }
});
