/**
 * Whether LowKey protects a frame. A frame is on an enabled site when its own origin is, when a
 * frame above it is, or when the page it is in (the top-level site) is: upload widgets are often
 * frames from another origin (their own domain) inside the site the user enabled, and what the
 * user chooses there goes to that site all the same.
 *
 * The frame's origin is read, not its URL: an `about:blank`, `about:srcdoc` or `blob:` frame has
 * its creator's origin (its URL has no host), and a `data:` or sandboxed frame has an opaque
 * origin ("null"). The content script runs in every frame (static, `match_origin_as_fallback`),
 * so what cannot be known here fails towards protecting: the page never gets an original by
 * mistake. The top-level page's address comes from the background (`sender.tab.url`), since a
 * frame of another origin can read neither its parents' locations nor, in Firefox,
 * `location.ancestorOrigins`.
 */
import { findSite } from './siteList.js';

/**
 * What a content script asks the background about its frame (background/frames.js answers):
 * `top`: the top-level page's address; `mainWorld`: the page-world script for this frame.
 */
export const FRAME_MESSAGES = Object.freeze({ top: 'frame-top', mainWorld: 'frame-main-world' });

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
 * @returns {{own: string|null, ancestors: string[], topLevel: boolean}} `own`: the frame's origin
 *   when not opaque; `ancestors`: the origins of the frames above it that can be known, nearest
 *   first (`location.ancestorOrigins` in Chromium; in Firefox the parents whose location is
 *   readable); `topLevel`: whether it is the page itself, not a frame in one
 */
export function frameOrigins(win) {
  const own = read(() => win.location.origin);
  const parent = read(() => win.parent);
  const topLevel = !parent || parent === win;
  const ancestors = [];
  const listed = read(() => win.location.ancestorOrigins);
  if (listed && typeof listed.length === 'number') {
    for (let i = 0; i < listed.length; i += 1) if (usable(listed[i])) ancestors.push(listed[i]);
  }
  if (ancestors.length === 0) {
    let current = win;
    for (let depth = 0; depth < 64; depth += 1) {
      const next = read(() => current.parent);
      if (!next || next === current) break;
      const origin = read(() => next.location.origin);
      if (usable(origin)) ancestors.push(origin);
      current = next;
    }
  }
  return { own: usable(own) ? own : null, ancestors, topLevel };
}

/**
 * The top-level page's origin as Chromium lists it (the last of `location.ancestorOrigins`), or
 * null where it cannot be read this way (Firefox has no such list; a masked entry is "null").
 * @param {Window|object} win
 * @returns {string|null}
 */
export function listedTopOrigin(win) {
  const listed = read(() => win.location.ancestorOrigins);
  if (!listed || typeof listed.length !== 'number' || listed.length === 0) return null;
  const last = listed[listed.length - 1];
  return usable(last) ? last : null;
}

/**
 * Whether a frame is on an enabled site: its own origin, a known ancestor's or the top-level
 * page's. A frame in a page whose address is not known yet (`top` null) is protected, as is a
 * page with an opaque origin and nothing above it (fail closed).
 * @param {string[]} sites the enabled sites
 * @param {Window|object} win
 * @param {string|null} [top] the top-level page's URL, when known (the background's answer)
 * @returns {boolean}
 */
export function frameEnabled(sites, win, top = null) {
  const { own, ancestors, topLevel } = frameOrigins(win);
  const listed = (origin) => findSite(sites, origin) !== null;
  if (own && listed(own)) return true;
  if (ancestors.some(listed)) return true;
  if (topLevel) return !own; // the page itself: its own origin decides, when it has one
  if (typeof top === 'string' && usable(read(() => new URL(top).origin))) return listed(top);
  return true;
}

/**
 * Whether the page-world script (content/main-world.js) must be asked for in this frame: it is
 * enabled through its top-level page or an ancestor, not by its own origin, so neither the
 * manifest's scripts nor the ones registered for the user's sites matched it.
 * @param {string[]} sites
 * @param {Window|object} win
 * @returns {boolean}
 */
export function needsMainWorld(sites, win) {
  const { own, topLevel } = frameOrigins(win);
  return !topLevel && !(own && findSite(sites, own) !== null);
}
