// background/sites.js and background/frames.js: the manifest declares the content scripts; the
// page-world script is registered for the sites the user adds; the tabs open when the extension
// session begins get both; frames of another origin learn their page's address.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { importBuilt } from './helpers.mjs';

function fakeApi(stored, { tabs = [] } = {}) {
  const registered = new Map();
  const log = [];
  const executed = [];
  const session = {};
  return {
    registered, log, executed, session,
    runtime: { id: 'lowkey', getURL: (path) => `chrome-extension://lowkey/${path}` },
    storage: {
      local: { get: async (keys) => (typeof keys === 'string' ? { [keys]: stored[keys] } : stored) },
      session: {
        get: async (key) => ({ [key]: session[key] }),
        set: async (values) => Object.assign(session, values),
      },
    },
    tabs: { query: async () => tabs },
    scripting: {
      getRegisteredContentScripts: async ({ ids } = {}) => [...registered.values()].filter((s) => !ids || ids.includes(s.id)),
      registerContentScripts: async (scripts) => {
        log.push(['register', scripts.map((s) => s.id)]);
        for (const s of scripts) {
          if (registered.has(s.id)) throw new Error(`duplicate id ${s.id}`);
          registered.set(s.id, s);
        }
      },
      updateContentScripts: async (scripts) => {
        log.push(['update', scripts.map((s) => s.id)]);
        for (const s of scripts) registered.set(s.id, { ...registered.get(s.id), ...s });
      },
      unregisterContentScripts: async ({ ids }) => {
        log.push(['unregister', ids]);
        for (const id of ids) registered.delete(id);
      },
      executeScript: async (details) => {
        if (details.target.tabId === 666) throw new Error('Cannot access contents of the page');
        executed.push(details);
        return [];
      },
    },
  };
}

// settings.js takes the API object when first imported: one object, refilled by each test.
const chrome = {};
globalThis.chrome = chrome;
const use = (api) => Object.assign(chrome, api);
const sites = await importBuilt('background/sites.js');
const frames = await importBuilt('background/frames.js');

test('only the sites the user added get a registered page-world script; the rest is the manifest\'s', async () => {
  // The test build's defaults: the shipped list and example.com (helpers.mjs's config.js).
  const stored = { sites: ['example.com', 'facebook.com'] };
  const api = fakeApi(stored);
  use(api);
  assert.deepEqual(sites.addedSites(['facebook.com', 'mine.org', 'example.com']), ['mine.org']);
  await sites.syncContentScripts();
  assert.equal(api.registered.size, 0, 'the default sites are declared in the manifest');
  stored.sites = ['example.com', 'mine.org'];
  await sites.syncContentScripts();
  const script = api.registered.get(sites.MAIN_WORLD_SCRIPT_ID);
  assert.deepEqual(script.matches, ['*://*.mine.org/*']);
  assert.equal(script.world, 'MAIN');
  assert.equal(script.matchOriginAsFallback, true);
  assert.equal(script.allFrames, true);
  assert.equal(script.runAt, 'document_start');
  assert.deepEqual(script.js, ['content/main-world.js']);
  stored.sites = ['mine.org', 'other.net'];
  await sites.syncContentScripts();
  assert.deepEqual(api.registered.get(sites.MAIN_WORLD_SCRIPT_ID).matches, ['*://*.mine.org/*', '*://*.other.net/*']);
  // An older version's registration of content.js (now in the manifest) goes.
  api.registered.set(sites.LEGACY_CONTENT_SCRIPT_ID, { id: sites.LEGACY_CONTENT_SCRIPT_ID, js: ['content.js'] });
  stored.sites = ['example.com'];
  await sites.syncContentScripts();
  assert.equal(api.registered.size, 0);
});

test('the tabs open when the session begins get content.js; those of enabled sites the page-world script', async () => {
  const tabs = [
    { id: 1, url: 'https://www.facebook.com/me' }, { id: 2, url: 'https://news.other.net/' },
    { id: 3, url: 'chrome://settings/' }, { id: 4 }, { id: 666, url: 'https://example.com/' },
  ];
  const api = fakeApi({}, { tabs });
  use(api);
  assert.equal(await sites.injectOncePerSession(), true);
  const by = (file) => api.executed.filter((d) => d.files[0] === file).map((d) => d.target.tabId);
  assert.deepEqual(by('content.js'), [1, 2]);
  assert.deepEqual(by('content/main-world.js'), [1]);
  for (const details of api.executed) {
    assert.equal(details.target.allFrames, true);
    assert.equal(details.injectImmediately, true);
    assert.equal(details.world, details.files[0] === 'content.js' ? undefined : 'MAIN');
  }
  // A worker that wakes up later in the same session does it no more.
  assert.equal(await sites.injectOncePerSession(), false);
  assert.equal(api.executed.length, 3);
  // A site just added: its open tabs get the page-world script (content.js runs there already).
  api.executed.length = 0;
  await sites.injectOpenTabs({ only: ['other.net'] });
  assert.deepEqual(api.executed.map((d) => [d.target.tabId, d.files[0]]), [[2, 'content/main-world.js']]);
});

test('the sites a change of the list added (an absent list is the default one)', () => {
  assert.deepEqual(sites.sitesAdded({ oldValue: ['a.com'], newValue: ['a.com', 'b.org'] }), ['b.org']);
  assert.deepEqual(sites.sitesAdded({ newValue: ['facebook.com', 'b.org'] }), ['b.org']);
  assert.deepEqual(sites.sitesAdded({ oldValue: ['a.com'] }).includes('facebook.com'), true);
  assert.deepEqual(sites.sitesAdded({ oldValue: ['a.com', 'b.org'], newValue: ['a.com'] }), []);
});

test('a frame learns its page\'s address; the page-world script only for frames of enabled pages', async () => {
  const api = fakeApi({ sites: ['example.com'] });
  use(api);
  const ask = (message, sender) => new Promise((resolve) => {
    const answer = frames.onFrameMessage(message, sender, resolve);
    if (answer === undefined) resolve('ignored');
  });
  const tab = { id: 7, url: 'https://www.example.com/me' };
  const widget = { id: 'lowkey', tab, frameId: 3, url: 'https://upload.widgets.net/x' };
  assert.deepEqual(await ask({ type: 'frame-top' }, widget), { top: 'https://www.example.com/me' });
  assert.deepEqual(await ask({ type: 'frame-main-world' }, widget), { injected: true });
  assert.deepEqual(api.executed, [{
    target: { tabId: 7, frameIds: [3] }, files: ['content/main-world.js'], world: 'MAIN', injectImmediately: true,
  }]);
  const elsewhere = { ...widget, tab: { id: 8, url: 'https://news.other.net/' } };
  assert.deepEqual(await ask({ type: 'frame-main-world' }, elsewhere), { injected: false });
  assert.equal(api.executed.length, 1);
  // Not a content script of LowKey's: another extension, LowKey's own pages, no tab.
  assert.equal(await ask({ type: 'frame-top' }, { ...widget, id: 'other' }), 'ignored');
  assert.equal(await ask({ type: 'frame-top' }, { ...widget, url: 'chrome-extension://lowkey/popup.html' }), 'ignored');
  assert.equal(await ask({ type: 'frame-top' }, { id: 'lowkey', url: 'https://x.net/' }), 'ignored');
  assert.equal(await ask({ type: 'toggle' }, widget), 'ignored');
});
