/**
 * The content script runs on the enabled sites only: it is registered with the sites' match
 * patterns (`scripting.registerContentScripts`), again whenever the list changes.
 */
import { matchPatterns } from '../lib/siteList.js';
import { api, getSites } from '../shared/settings.js';

export const CONTENT_SCRIPT_ID = 'lowkey-content';

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
  const existing = await api.scripting.getRegisteredContentScripts({ ids: [CONTENT_SCRIPT_ID] });
  if (matches.length === 0) {
    if (existing.length) await api.scripting.unregisterContentScripts({ ids: [CONTENT_SCRIPT_ID] });
    return;
  }
  const script = {
    id: CONTENT_SCRIPT_ID,
    js: ['content.js'],
    matches,
    runAt: 'document_start',
    allFrames: true,
    persistAcrossSessions: true,
  };
  if (existing.length) await api.scripting.updateContentScripts([script]);
  else await api.scripting.registerContentScripts([script]);
}
