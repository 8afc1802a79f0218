import assert from 'node:assert/strict';
import { test } from 'node:test';
import { frameEnabled, frameOrigins, listedTopOrigin, needsMainWorld } from '../src/lib/frameSite.js';

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

test('an opaque frame is decided by its ancestors (Chromium: ancestorOrigins) and its page', () => {
  const top = win({ origin: 'https://other.net' });
  const data = win({ origin: 'null', href: 'data:text/html,x', ancestorOrigins: ['null', 'https://example.com'], parent: top });
  assert.deepEqual(frameOrigins(data), { own: null, ancestors: ['https://example.com'], topLevel: false });
  assert.equal(frameEnabled(sites, data, 'https://other.net/'), true);
  const elsewhere = win({ origin: 'null', ancestorOrigins: ['https://other.net'], parent: top });
  assert.equal(frameEnabled(sites, elsewhere, 'https://other.net/'), false);
  assert.equal(frameEnabled(sites, elsewhere), true, 'its page not known yet: protected');
});

test('Firefox (no ancestorOrigins): readable parents speak, unreadable ones are skipped', () => {
  const top = win({ origin: 'https://example.com' });
  const middle = win({ origin: 'https://ads.other.net', parent: top, crossOrigin: true });
  const sandboxed = win({ origin: 'null', href: 'about:srcdoc', parent: middle });
  assert.deepEqual(frameOrigins(sandboxed).ancestors, ['https://example.com']);
  assert.equal(frameEnabled(sites, sandboxed, 'https://example.com/'), true);
});

test('an upload frame of another origin is judged by its top-level page (issue 22)', () => {
  // The widget's own origin is not enabled, and Firefox cannot read the page above it: the
  // page's address (from the background) decides.
  const page = win({ origin: 'https://www.example.com', crossOrigin: true });
  const widget = win({ origin: 'https://upload.widgets.net', parent: page });
  assert.deepEqual(frameOrigins(widget), { own: 'https://upload.widgets.net', ancestors: [], topLevel: false });
  assert.equal(frameEnabled(sites, widget, 'https://www.example.com/me'), true);
  assert.equal(needsMainWorld(sites, widget), true);
  // The same widget in a page of a site that is not enabled: as it is.
  assert.equal(frameEnabled(sites, widget, 'https://news.other.net/'), false);
  // Its page not known yet (the background has not answered): protected meanwhile.
  assert.equal(frameEnabled(sites, widget), true);
  assert.equal(frameEnabled(sites, widget, 'about:blank'), true);
  // Chromium names the page in ancestorOrigins: no need to wait.
  const listed = win({ origin: 'https://upload.widgets.net', parent: page, ancestorOrigins: ['https://www.example.com'] });
  assert.equal(frameEnabled(sites, listed, null), true);
  // A frame of an enabled site inside any page is enabled by its own origin; it has the
  // page-world script already.
  const own = win({ origin: 'https://example.com', parent: win({ origin: 'https://other.net', crossOrigin: true }) });
  assert.equal(frameEnabled(sites, own, 'https://other.net/'), true);
  assert.equal(needsMainWorld(sites, own), false);
  // A page (top level) is decided by its own origin; it never asks for the page-world script.
  assert.equal(frameEnabled(sites, win({ origin: 'https://other.net' }), 'https://example.com/'), false);
  assert.equal(needsMainWorld(sites, win({ origin: 'https://other.net' })), false);
});

test('nothing known about an opaque frame: protect (fail closed)', () => {
  const top = win({ origin: 'https://x.net', crossOrigin: true });
  const lone = win({ origin: 'null', href: 'data:text/html,x', parent: top });
  assert.deepEqual(frameOrigins(lone), { own: null, ancestors: [], topLevel: false });
  assert.equal(frameEnabled(sites, lone), true);
  assert.equal(frameEnabled(sites, win({ origin: 'null' })), true);
});

test('Chromium names the top-level page last in ancestorOrigins; Firefox and masked entries do not', () => {
  const page = win({ origin: 'https://www.example.com', crossOrigin: true });
  const listed = win({ origin: 'https://w.net', parent: page, ancestorOrigins: ['https://mid.org', 'https://www.example.com'] });
  assert.equal(listedTopOrigin(listed), 'https://www.example.com');
  assert.equal(listedTopOrigin(win({ origin: 'https://w.net', parent: page })), null);
  assert.equal(listedTopOrigin(win({ origin: 'https://w.net', parent: page, ancestorOrigins: ['https://mid.org', 'null'] })), null);
  assert.equal(listedTopOrigin(win({ origin: 'https://w.net', ancestorOrigins: [] })), null);
});
