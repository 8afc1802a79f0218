import assert from 'node:assert/strict';
import { test } from 'node:test';
import { frameEnabled, frameOrigins } from '../src/lib/frameSite.js';

const sites = ['example.com'];

/** A window-like object; `crossOrigin` makes its location throw, as another origin's does. */
function win({ origin, href = origin, ancestorOrigins, parent, crossOrigin = false }) {
  const w = {};
  const location = { origin, href };
  if (ancestorOrigins) location.ancestorOrigins = ancestorOrigins;
  Object.defineProperty(w, 'location', {
    get() {
      if (crossOrigin) throw new DOMException('Permission denied', 'SecurityError');
      return location;
    },
  });
  w.parent = parent ?? w;
  return w;
}

test('a frame with its own origin is decided by it (not by its URL)', () => {
  assert.equal(frameEnabled(sites, win({ origin: 'https://www.example.com' })), true);
  assert.equal(frameEnabled(sites, win({ origin: 'https://other.net' })), false);
  // about:blank / about:srcdoc / blob: frames: the URL has no host, the origin is the creator's
  for (const href of ['about:blank', 'about:srcdoc', 'blob:https://example.com/1f2e']) {
    assert.equal(frameEnabled(sites, win({ origin: 'https://example.com', href })), true, href);
  }
});

test('an opaque frame is decided by its ancestors (Chromium: ancestorOrigins)', () => {
  const top = win({ origin: 'https://other.net' });
  const data = win({ origin: 'null', href: 'data:text/html,x', ancestorOrigins: ['null', 'https://example.com'], parent: top });
  assert.deepEqual(frameOrigins(data), { own: null, ancestors: ['https://example.com'] });
  assert.equal(frameEnabled(sites, data), true);
  const elsewhere = win({ origin: 'null', ancestorOrigins: ['https://other.net'], parent: top });
  assert.equal(frameEnabled(sites, elsewhere), false);
});

test('Firefox (no ancestorOrigins): readable parents speak, unreadable ones are skipped', () => {
  const top = win({ origin: 'https://example.com' });
  const middle = win({ origin: 'https://ads.other.net', parent: top, crossOrigin: true });
  const sandboxed = win({ origin: 'null', href: 'about:srcdoc', parent: middle });
  assert.deepEqual(frameOrigins(sandboxed).ancestors, ['https://example.com']);
  assert.equal(frameEnabled(sites, sandboxed), true);
});

test('nothing known about an opaque frame: protect (fail closed)', () => {
  const top = win({ origin: 'https://x.net', crossOrigin: true });
  const lone = win({ origin: 'null', href: 'data:text/html,x', parent: top });
  assert.deepEqual(frameOrigins(lone), { own: null, ancestors: [] });
  assert.equal(frameEnabled(sites, lone), true);
  assert.equal(frameEnabled(sites, win({ origin: 'null' })), true);
});
