// background/sites.js: both content scripts, in every frame (matchOriginAsFallback), updated
// with the site list.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { importBuilt } from './helpers.mjs';

function fakeApi(stored) {
  const registered = new Map();
  const log = [];
  return {
    registered, log,
    storage: { local: { get: async (keys) => (typeof keys === 'string' ? { [keys]: stored[keys] } : stored) } },
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
    },
  };
}

test('both scripts run in every frame, about:blank/srcdoc/blob:/data: ones included', async () => {
  const stored = { sites: ['example.com'] };
  globalThis.chrome = fakeApi(stored);
  const { contentScripts, syncContentScripts, CONTENT_SCRIPT_ID, MAIN_WORLD_SCRIPT_ID } = await importBuilt('background/sites.js');
  const scripts = contentScripts(['*://*.example.com/*']);
  for (const script of scripts) {
    assert.equal(script.matchOriginAsFallback, true, script.id);
    assert.equal(script.allFrames, true);
    assert.equal(script.runAt, 'document_start');
    for (const match of script.matches) assert.match(match, /\/\*$/); // a wildcard path, as required
  }
  const main = scripts.find((s) => s.id === MAIN_WORLD_SCRIPT_ID);
  assert.equal(main.world, 'MAIN');
  assert.deepEqual(main.js, ['content/main-world.js']);
  assert.equal(scripts.find((s) => s.id === CONTENT_SCRIPT_ID).world, undefined); // isolated

  const api = globalThis.chrome;
  await syncContentScripts();
  assert.deepEqual([...api.registered.keys()].sort(), [CONTENT_SCRIPT_ID, MAIN_WORLD_SCRIPT_ID].sort());
  stored.sites = ['example.com', 'other.net'];
  await syncContentScripts();
  assert.ok(api.registered.get(MAIN_WORLD_SCRIPT_ID).matches.includes('*://*.other.net/*'));
  // an install that had only the old content script gets the page-world one added
  api.registered.delete(MAIN_WORLD_SCRIPT_ID);
  await syncContentScripts();
  assert.ok(api.registered.has(MAIN_WORLD_SCRIPT_ID));
  stored.sites = [];
  await syncContentScripts();
  assert.equal(api.registered.size, 0);
});
