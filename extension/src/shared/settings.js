/**
 * Where the extension keeps what must outlive a service worker (MV3 workers die when idle):
 * `storage.local` for the user's choices and the last results (summaries, no image),
 * `storage.session` for the toolbar's model and the last photo's before/after thumbnails (in
 * memory: gone when the browser closes, never written to disk). Used by the background, the popup, the
 * options page and the content scripts (which may read `storage.local` only).
 */
import { EXTRA_SITES } from '../config.js';
import { DEFAULT_SITES, parseSiteList } from '../lib/siteList.js';
import { presetFrom } from './presets.js';

/** storage.local keys. */
export const LOCAL = Object.freeze({
  paused: 'paused', // boolean: protection paused by the user
  sites: 'sites', // string[]: enabled sites (absent: the default list)
  results: 'results', // summaries of the last results, newest first
  preset: 'preset', // string: the preset the user chose (shared/presets.js; absent: the default)
  // Where older versions kept the preview (removed at install: thumbnails of the user's photos
  // must not stay on disk).
  preview: 'preview',
});

/** storage.session keys (in memory, never on disk; the extension's own pages only). */
export const SESSION = Object.freeze({
  toolbar: 'toolbar',
  preview: 'preview', // {name, time, before, after}: thumbnails (data URLs) of the last photo
  // true once the content scripts were injected into the tabs open when this extension session
  // began (background/sites.js); emptied with the session (install, update, enable, restart)
  injected: 'injected',
});

/** How many results the popup lists. */
export const MAX_RESULTS = 10;

/** The browser's extension API (`browser` in Firefox, `chrome` in Chromium). */
export const api = globalThis.browser ?? globalThis.chrome;

/** The default site list of this build (a test build adds its --extra-host sites). */
export const DEFAULTS = Object.freeze([...DEFAULT_SITES, ...EXTRA_SITES]);

/**
 * The enabled sites from what storage.local holds.
 * @param {object} stored the result of storage.local.get
 * @returns {string[]}
 */
export function sitesFrom(stored) {
  return parseSiteList(stored[LOCAL.sites], DEFAULTS);
}

/**
 * The enabled sites.
 * @returns {Promise<string[]>}
 */
export async function getSites() {
  return sitesFrom(await api.storage.local.get(LOCAL.sites));
}

/**
 * Store the enabled sites (normalised).
 * @param {string[]} sites
 */
export async function setSites(sites) {
  await api.storage.local.set({ [LOCAL.sites]: parseSiteList(sites, []) });
}

/**
 * The preset photos are protected with (the user's choice, else the default).
 * @returns {Promise<string>}
 */
export async function getPreset() {
  const stored = await api.storage.local.get(LOCAL.preset);
  return presetFrom(stored[LOCAL.preset]);
}

/**
 * Store the user's choice of preset (one of shared/presets.js's).
 * @param {string} name
 */
export async function setPreset(name) {
  await api.storage.local.set({ [LOCAL.preset]: presetFrom(name) });
}

/**
 * Whether protection is paused.
 * @returns {Promise<boolean>}
 */
export async function getPaused() {
  const stored = await api.storage.local.get(LOCAL.paused);
  return Boolean(stored[LOCAL.paused]);
}
