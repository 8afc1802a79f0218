/**
 * What the content script knows about its frame: whether LowKey is paused, and whether the frame
 * is on an enabled site (lib/frameSite.js), kept up to date from storage.local. Until both are
 * known the frame counts as enabled (content.js holds a photo chosen meanwhile, and the
 * controller decides once `state.decided` resolves): nothing passes before LowKey knows.
 *
 * A frame inside another page reads that page's origin from `location.ancestorOrigins`
 * (Chromium) or asks the background for its address (a frame of another origin cannot read it
 * otherwise), and, when it is enabled only through that page or an ancestor, for the
 * page-world script (content/main-world.js), which nothing else injects into it.
 */
import { FRAME_MESSAGES, frameEnabled, listedTopOrigin, needsMainWorld } from '../lib/frameSite.js';
import { LOCAL, sitesFrom } from '../shared/settings.js';

/**
 * Keep `state` up to date for the frame `win`.
 * @param {{api: object, win: Window|object, state: {enabled: boolean, paused: boolean}}} options
 * @returns {{state: object, decided: Promise<void>, stop: () => void}} `state.decided` too
 */
export function followFrameState({ api, win, state }) {
  let topLevel;
  try {
    topLevel = win.parent === win || !win.parent;
  } catch {
    topLevel = false;
  }
  // Not needed for the page itself; for a frame: its page's origin as Chromium lists it, else
  // the background's answer (Firefox, or a masked entry).
  const listed = topLevel ? null : listedTopOrigin(win);
  const top = topLevel || listed ? Promise.resolve(listed)
    : Promise.resolve()
      .then(() => api.runtime.sendMessage({ type: FRAME_MESSAGES.top }))
      .then((answer) => (typeof answer?.top === 'string' ? answer.top : null), () => null);
  let askedMainWorld = false;
  const refresh = async () => {
    const [stored, topUrl] = await Promise.all([api.storage.local.get([LOCAL.paused, LOCAL.sites]), top]);
    const sites = sitesFrom(stored);
    state.paused = Boolean(stored[LOCAL.paused]);
    state.enabled = frameEnabled(sites, win, topUrl);
    if (state.enabled && !askedMainWorld && needsMainWorld(sites, win)) {
      askedMainWorld = true;
      Promise.resolve().then(() => api.runtime.sendMessage({ type: FRAME_MESSAGES.mainWorld }))
        .catch(() => {}); // the photos are held all the same; only detached inputs need it
    }
  };
  // Decided even when storage fails: then the frame stays protected (enabled), as it started.
  const decided = refresh().catch((err) => console.error('LowKey could not read its settings:', err));
  state.decided = decided;
  const onChanged = (changes, area) => {
    if (area === 'local' && (LOCAL.paused in changes || LOCAL.sites in changes)) refresh().catch(() => {});
  };
  api.storage.onChanged.addListener(onChanged);
  return {
    state,
    decided,
    stop: () => {
      try {
        api.storage.onChanged.removeListener(onChanged);
      } catch {
        // the extension is gone: so is its listener
      }
    },
  };
}
