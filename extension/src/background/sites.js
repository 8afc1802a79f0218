/**
 * The content scripts run on the enabled sites only: they are registered with the sites' match
 * patterns (`scripting.registerContentScripts`), again whenever the list changes. Both run in
 * every frame, including the frames whose URL has no host (about:blank, about:srcdoc, blob:,
 * data:), matched by their creator's origin (`matchOriginAsFallback`: Chromium 119+, Firefox
 * 128+): a page could otherwise take a photo through such a frame.
 *
 * - `content.js` (isolated world): holds the photos back, protects them, gives them to the page;
 * - `content/main-world.js` (the page's world): puts detached file inputs in the document before
 *   their picker opens, so content.js sees their events, and removes `showOpenFilePicker`.
 */
import { matchPatterns } from '../lib/siteList.js';
import { api, getSites } from '../shared/settings.js';

export const CONTENT_SCRIPT_ID = 'lowkey-content';
export const MAIN_WORLD_SCRIPT_ID = 'lowkey-main-world';

/**
 * The scripts to register for match patterns.
 * @param {string[]} matches
 * @returns {object[]} scripting.RegisteredContentScript objects
 */
export function contentScripts(matches) {
  const common = {
    matches, runAt: 'document_start', allFrames: true, matchOriginAsFallback: true,
    persistAcrossSessions: true,
  };
  return [
    { id: CONTENT_SCRIPT_ID, js: ['content.js'], ...common },
    { id: MAIN_WORLD_SCRIPT_ID, js: ['content/main-world.js'], world: 'MAIN', ...common },
  ];
}

let chain = Promise.resolve();

/**
 * Register (or update, or remove) the content script for the current site list; calls run one
 * after the other (install and a change of the list may come together).
 * @returns {Promise<void>}
 */
export function syncContentScripts() {
  const next = chain.then(sync);
  chain = next.catch(() => {});
  return next;
}

async function sync() {
  const matches = matchPatterns(await getSites());
  const ids = [CONTENT_SCRIPT_ID, MAIN_WORLD_SCRIPT_ID];
  const existing = new Set((await api.scripting.getRegisteredContentScripts({ ids })).map((s) => s.id));
  if (matches.length === 0) {
    if (existing.size) await api.scripting.unregisterContentScripts({ ids: [...existing] });
    return;
  }
  const scripts = contentScripts(matches);
  const update = scripts.filter((script) => existing.has(script.id));
  const register = scripts.filter((script) => !existing.has(script.id));
  if (update.length) await api.scripting.updateContentScripts(update);
  if (register.length) await api.scripting.registerContentScripts(register);
}
