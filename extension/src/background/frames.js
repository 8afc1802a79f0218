/**
 * What content scripts ask the background about their frame (content/frameState.js), over
 * runtime.sendMessage:
 *
 * - `{type: 'frame-top'}` → `{top}`: the address of the page the frame is in (`sender.tab.url`),
 *   which a frame of another origin cannot read itself;
 * - `{type: 'frame-main-world'}` → `{injected}`: the page-world script (content/main-world.js)
 *   for a frame enabled only through its top-level page or an ancestor (an upload frame of
 *   another origin), which neither the manifest's script nor the user's sites' registration
 *   matches. Injected only when the frame's page is on an enabled site.
 */
import { FRAME_MESSAGES } from '../lib/frameSite.js';
import { findSite } from '../lib/siteList.js';
import { api, getSites } from '../shared/settings.js';
import { MAIN_WORLD_FILE } from './sites.js';

/**
 * Whether a message comes from one of LowKey's content scripts (not its own pages).
 * @param {object} sender runtime.MessageSender
 * @returns {boolean}
 */
export function fromContentScript(sender) {
  return sender?.id === api.runtime.id && Boolean(sender.tab)
    && !String(sender.url ?? '').startsWith(api.runtime.getURL(''));
}

/**
 * Put the page-world script into the sender's frame, when its page is on an enabled site.
 * @param {object} sender
 * @returns {Promise<boolean>} whether it was injected
 */
export async function injectMainWorld(sender) {
  const top = sender.tab?.url;
  if (!top || findSite(await getSites(), top) === null || !Number.isInteger(sender.frameId)) return false;
  await api.scripting.executeScript({
    target: { tabId: sender.tab.id, frameIds: [sender.frameId] }, files: [MAIN_WORLD_FILE],
    world: 'MAIN', injectImmediately: true,
  });
  return true;
}

/**
 * runtime.onMessage listener for content scripts.
 * @returns {boolean|undefined} true when it answers later
 */
export function onFrameMessage(message, sender, sendResponse) {
  if (!fromContentScript(sender)) return undefined;
  if (message?.type === FRAME_MESSAGES.top) {
    sendResponse({ top: typeof sender.tab.url === 'string' ? sender.tab.url : null });
    return false;
  }
  if (message?.type === FRAME_MESSAGES.mainWorld) {
    injectMainWorld(sender).then((injected) => sendResponse({ injected }), (err) => {
      console.error('LowKey: the page-world script could not be injected:', err);
      sendResponse({ injected: false });
    });
    return true;
  }
  return undefined;
}
