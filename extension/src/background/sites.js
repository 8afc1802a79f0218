/**
 * Which scripts run where. The manifest declares both content scripts, so they are there from
 * the browser's first page on (a script registered at install would come too late for a page
 * opened with the browser, and never reach tabs open before):
 *
 * - `content.js` (isolated world), in every frame of every http(s) page: it holds photos only
 *   in frames on an enabled site (its own origin, an ancestor's or the top-level page's);
 * - `content/main-world.js` (the page's world), in every frame of the default sites: puts
 *   detached file inputs in the document before their picker opens, so content.js sees their
 *   events, and removes `showOpenFilePicker`.
 *
 * Here: the page-world script is registered for the sites the user adds (and again whenever the
 * list changes), and both scripts are injected into the tabs open when LowKey starts in a fresh
 * extension session (installed, updated, reloaded or enabled: `storage.session` is empty then),
 * which no manifest script reaches in Chromium. Frames enabled only by their top-level page get
 * the page-world script on request (background/frames.js).
 */
import { findSite, matchPatterns } from '../lib/siteList.js';
import { DEFAULTS, LOCAL, SESSION, api, getSites, sitesFrom } from '../shared/settings.js';

export const MAIN_WORLD_SCRIPT_ID = 'lowkey-main-world';
/** What older versions registered for content.js (now in the manifest): removed when found. */
export const LEGACY_CONTENT_SCRIPT_ID = 'lowkey-content';
export const CONTENT_FILE = 'content.js';
export const MAIN_WORLD_FILE = 'content/main-world.js';

/**
 * The sites the manifest's page-world script does not cover: those the user added.
 * @param {string[]} sites the enabled sites
 * @param {string[]} [declared] the sites of the manifest's script (this build's default list)
 * @returns {string[]}
 */
export function addedSites(sites, declared = DEFAULTS) {
  return sites.filter((site) => !declared.includes(site));
}

/**
 * The sites a change of the stored list enabled (an absent list is the default one).
 * @param {{oldValue?: unknown, newValue?: unknown}} change a storage.onChanged change of the list
 * @returns {string[]}
 */
export function sitesAdded({ oldValue, newValue }) {
  const before = sitesFrom({ [LOCAL.sites]: oldValue });
  return sitesFrom({ [LOCAL.sites]: newValue }).filter((site) => !before.includes(site));
}

/**
 * The page-world script to register for match patterns.
 * @param {string[]} matches
 * @returns {object} a scripting.RegisteredContentScript
 */
export function mainWorldScript(matches) {
  return {
    id: MAIN_WORLD_SCRIPT_ID, js: [MAIN_WORLD_FILE], world: 'MAIN', matches,
    runAt: 'document_start', allFrames: true, matchOriginAsFallback: true, persistAcrossSessions: true,
  };
}

let chain = Promise.resolve();

/**
 * Register (or update, or remove) the page-world script for the sites the user added; calls run
 * one after the other (install and a change of the list may come together).
 * @returns {Promise<void>}
 */
export function syncContentScripts() {
  const next = chain.then(sync);
  chain = next.catch(() => {});
  return next;
}

async function sync() {
  const matches = matchPatterns(addedSites(await getSites()));
  const ids = [MAIN_WORLD_SCRIPT_ID, LEGACY_CONTENT_SCRIPT_ID];
  const existing = new Set((await api.scripting.getRegisteredContentScripts({ ids })).map((s) => s.id));
  const remove = [...existing].filter((id) => id === LEGACY_CONTENT_SCRIPT_ID
    || (id === MAIN_WORLD_SCRIPT_ID && matches.length === 0));
  if (remove.length) await api.scripting.unregisterContentScripts({ ids: remove });
  if (matches.length === 0) return;
  const script = mainWorldScript(matches);
  if (existing.has(MAIN_WORLD_SCRIPT_ID)) await api.scripting.updateContentScripts([script]);
  else await api.scripting.registerContentScripts([script]);
}

/**
 * Inject the content scripts into open tabs: content.js into every frame of every http(s) tab
 * (it decides per frame), the page-world script into the tabs whose page is on an enabled site.
 * A tab that refuses (a discarded tab, a browser page) is skipped: the manifest's scripts reach
 * it when it loads.
 * @param {{only?: string[]}} [options] only: inject the page-world script into the tabs of these
 *   sites alone, and content.js nowhere (a site just added: content.js already runs everywhere)
 * @returns {Promise<number>} how many tabs got content.js
 */
export async function injectOpenTabs({ only } = {}) {
  const sites = await getSites();
  const tabs = await api.tabs.query({});
  let injected = 0;
  await Promise.all(tabs.map(async (tab) => {
    if (!/^https?:\/\//i.test(tab.url ?? '')) return;
    const target = { tabId: tab.id, allFrames: true };
    if (!only) {
      try {
        await api.scripting.executeScript({ target, files: [CONTENT_FILE], injectImmediately: true });
        injected += 1;
      } catch {
        // not scriptable now: the manifest's script runs when it loads
      }
    }
    if (findSite(only ?? sites, tab.url) === null) return;
    await api.scripting.executeScript({ target, files: [MAIN_WORLD_FILE], world: 'MAIN', injectImmediately: true })
      .catch(() => {});
  }));
  return injected;
}

/**
 * Once per extension session (install, update, reload, enable, browser start): inject into the
 * tabs already open. `storage.session` is emptied whenever the extension stops, so a worker that
 * merely woke up finds the mark and does nothing.
 * @returns {Promise<boolean>} whether it injected
 */
export async function injectOncePerSession() {
  const stored = await api.storage.session.get(SESSION.injected);
  if (stored[SESSION.injected]) return false;
  await api.storage.session.set({ [SESSION.injected]: true });
  await injectOpenTabs();
  return true;
}
