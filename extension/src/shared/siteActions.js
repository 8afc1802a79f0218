/**
 * Adding and removing sites from the extension's pages. Adding asks the browser for the site's
 * host permission (the content script runs only where it has one); the request is made first
 * and synchronously, inside the user's click, as Firefox requires.
 */
import { addSite, matchPattern, normaliseSite, removeSite } from '../lib/siteList.js';
import { api, getSites, setSites } from './settings.js';

/**
 * Add a site (call straight from a click or submit handler).
 * @param {string} input a host or URL
 * @returns {Promise<{site: string|null, added: boolean, granted: boolean}>}
 */
export function addSiteFromClick(input) {
  const site = normaliseSite(input);
  if (!site) return Promise.resolve({ site: null, added: false, granted: false });
  const asked = api.permissions.request({ origins: [matchPattern(site)] }).catch(() => false);
  const stored = getSites().then(async (sites) => {
    const result = addSite(sites, site);
    if (result.added) await setSites(result.sites);
    return result.added;
  });
  return Promise.all([asked, stored]).then(([granted, added]) => ({ site, added, granted }));
}

/**
 * Remove a site.
 * @param {string} site a normalised site
 * @returns {Promise<boolean>} whether it was listed
 */
export async function removeSiteNow(site) {
  const result = removeSite(await getSites(), site);
  if (result.removed) await setSites(result.sites);
  return result.removed;
}

/**
 * Whether the extension may run on a site.
 * @param {string} site
 * @returns {Promise<boolean>}
 */
export async function hasPermission(site) {
  try {
    return await api.permissions.contains({ origins: [matchPattern(site)] });
  } catch {
    return false;
  }
}
