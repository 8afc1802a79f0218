/**
 * Whether LowKey protects a frame, from the frame's origin rather than its URL: an `about:blank`,
 * `about:srcdoc` or `blob:` frame has its creator's origin (its URL has no host), and a `data:`
 * or sandboxed frame has an opaque origin ("null"), where the ancestors' origins decide. The
 * content script runs in such frames because it is registered with `matchOriginAsFallback`; the
 * browser matched them by their creator's origin, so what cannot be known here fails towards
 * protecting (the page never gets an original by mistake).
 */
import { findSite } from './siteList.js';

function read(fn) {
  try {
    return fn();
  } catch {
    return undefined; // cross-origin, or gone
  }
}

const usable = (origin) => typeof origin === 'string' && origin !== 'null' && /^https?:\/\//i.test(origin);

/**
 * The origins that speak for a frame.
 * @param {Window|object} win the frame's window (or an object shaped like one, in tests)
 * @returns {{own: string|null, ancestors: string[]}} `own`: the frame's origin when not opaque;
 *   `ancestors`: the origins of the frames above it that can be known, nearest first
 *   (`location.ancestorOrigins` in Chromium; in Firefox the parents whose location is readable)
 */
export function frameOrigins(win) {
  const own = read(() => win.location.origin);
  const ancestors = [];
  const listed = read(() => win.location.ancestorOrigins);
  if (listed && typeof listed.length === 'number') {
    for (let i = 0; i < listed.length; i += 1) if (usable(listed[i])) ancestors.push(listed[i]);
  }
  if (ancestors.length === 0) {
    let current = win;
    for (let depth = 0; depth < 64; depth += 1) {
      const parent = read(() => current.parent);
      if (!parent || parent === current) break;
      const origin = read(() => parent.location.origin);
      if (usable(origin)) ancestors.push(origin);
      current = parent;
    }
  }
  return { own: usable(own) ? own : null, ancestors };
}

/**
 * Whether a frame is on an enabled site: by its own origin; for an opaque one, when any known
 * ancestor is enabled, or when none can be known (fail closed).
 * @param {string[]} sites the enabled sites
 * @param {Window|object} win
 * @returns {boolean}
 */
export function frameEnabled(sites, win) {
  const { own, ancestors } = frameOrigins(win);
  if (own) return findSite(sites, own) !== null;
  if (ancestors.length === 0) return true;
  return ancestors.some((origin) => findSite(sites, origin) !== null);
}
