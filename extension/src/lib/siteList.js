/**
 * The sites where photos are protected: a list of host names, each covering itself and its
 * subdomains (`facebook.com` covers `www.facebook.com` and `m.facebook.com`, never
 * `facebook.com.evil.net` nor `notfacebook.com`).
 */

/** The default list: major social networks, messengers and photo sites. */
export const DEFAULT_SITES = Object.freeze([
  'facebook.com', 'messenger.com', 'instagram.com', 'threads.net', 'threads.com', 'x.com',
  'twitter.com', 'linkedin.com', 'reddit.com', 'tiktok.com', 'pinterest.com', 'flickr.com',
  'tumblr.com', 'vk.com', 'ok.ru', 'bsky.app', 'mastodon.social', 'web.whatsapp.com',
  'discord.com', 'web.telegram.org', 'snapchat.com', 'imgur.com', '500px.com', 'deviantart.com',
  'weibo.com', 'quora.com',
]);

const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;
const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/**
 * A site as stored: the lowercase host name (punycode), without scheme, port, path, `www.` or
 * `*.`; or null when `input` names no site (an empty string, a bare top-level domain, a URL
 * without a host, a host with characters no host has).
 * @param {string} input a host name or a URL ("https://www.Facebook.com/me" → "facebook.com")
 * @returns {string|null}
 */
export function normaliseSite(input) {
  if (typeof input !== 'string') return null;
  let text = input.trim().toLowerCase();
  if (!text) return null;
  if (text.startsWith('*.')) text = text.slice(2);
  let host;
  try {
    const url = new URL(/^[a-z][a-z0-9+.-]*:\/\//.test(text) ? text : `http://${text}`);
    if (!['http:', 'https:'].includes(url.protocol)) return null;
    host = url.hostname;
  } catch {
    return null;
  }
  host = host.replace(/\.$/, '');
  if (host.startsWith('www.')) host = host.slice(4);
  if (!host) return null;
  if (host.startsWith('[')) return host; // IPv6, already checked by URL
  const ip = IPV4.exec(host);
  if (ip) return ip.slice(1).every((n) => Number(n) <= 255) ? host : null;
  const labels = host.split('.');
  if (!labels.every((label) => LABEL.test(label))) return null;
  if (labels.length < 2 && host !== 'localhost') return null;
  if (/^\d+$/.test(labels[labels.length - 1])) return null;
  return host;
}

/**
 * The host of a URL or host name, lowercase, without `www.` stripping (for matching).
 * @param {string} urlOrHost
 * @returns {string|null}
 */
export function hostOf(urlOrHost) {
  if (typeof urlOrHost !== 'string' || !urlOrHost) return null;
  try {
    const text = urlOrHost.includes('://') ? urlOrHost : `http://${urlOrHost}`;
    const url = new URL(text);
    if (!['http:', 'https:'].includes(url.protocol)) return null;
    return url.hostname.replace(/\.$/, '') || null;
  } catch {
    return null;
  }
}

/**
 * Whether `host` is `site` or one of its subdomains (exact label match, no substrings).
 * @param {string} host e.g. "m.facebook.com"
 * @param {string} site a normalised site, e.g. "facebook.com"
 * @returns {boolean}
 */
export function hostMatches(host, site) {
  if (!host || !site) return false;
  const h = host.toLowerCase().replace(/\.$/, '');
  return h === site || h.endsWith(`.${site}`);
}

/**
 * The site of `sites` that covers a URL or host, or null.
 * @param {string[]} sites normalised sites
 * @param {string} urlOrHost
 * @returns {string|null} the most specific matching site
 */
export function findSite(sites, urlOrHost) {
  const host = hostOf(urlOrHost);
  if (!host) return null;
  const matching = sites.filter((site) => hostMatches(host, site));
  return matching.sort((a, b) => b.length - a.length)[0] ?? null;
}

/**
 * A clean list: normalised, without duplicates or junk, in the given order.
 * @param {unknown} value a stored value; anything but an array gives the default list
 * @param {string[]} [defaults] the default list
 * @returns {string[]}
 */
export function parseSiteList(value, defaults = DEFAULT_SITES) {
  if (!Array.isArray(value)) return [...defaults];
  const out = [];
  for (const item of value) {
    const site = normaliseSite(item);
    if (site && !out.includes(site)) out.push(site);
  }
  return out;
}

/**
 * Add a site.
 * @param {string[]} sites
 * @param {string} input a host or URL
 * @returns {{sites: string[], site: string|null, added: boolean}} `site` null when invalid
 */
export function addSite(sites, input) {
  const site = normaliseSite(input);
  if (!site) return { sites: [...sites], site: null, added: false };
  if (sites.includes(site)) return { sites: [...sites], site, added: false };
  return { sites: [...sites, site], site, added: true };
}

/**
 * Remove a site (the entry equal to the normalised input).
 * @param {string[]} sites
 * @param {string} input a host or URL
 * @returns {{sites: string[], site: string|null, removed: boolean}}
 */
export function removeSite(sites, input) {
  const site = normaliseSite(input);
  const rest = sites.filter((s) => s !== site);
  return { sites: rest, site, removed: rest.length !== sites.length };
}

/**
 * The match pattern of a site for content scripts and host permissions
 * (`*://*.facebook.com/*` covers facebook.com and its subdomains, http and https).
 * @param {string} site a normalised site
 * @returns {string}
 */
export function matchPattern(site) {
  if (site.startsWith('[') || IPV4.test(site) || site === 'localhost') return `*://${site}/*`;
  return `*://*.${site}/*`;
}

/**
 * The match patterns of a list.
 * @param {string[]} sites
 * @returns {string[]}
 */
export function matchPatterns(sites) {
  return sites.map(matchPattern);
}
