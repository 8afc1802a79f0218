/**
 * LowKey's background (Chromium: module service worker; Firefox: module event page).
 *
 * Every listener is registered at the top level, synchronously, so a worker woken by an event
 * finds it. Nothing that matters lives in globals: the user's choices and the last results are
 * in storage.local, the toolbar's model in storage.session, and the native connection is made
 * again on demand (requests pending on a dead connection fail safe: the page gets nothing).
 */
import { onFrameMessage } from './background/frames.js';
import { createMenus, MENU_POPUP, openPopup } from './background/menus.js';
import { togglePause } from './background/pause.js';
import { PROTECT_PORT, servePort } from './background/protect.js';
import { onPageMessage } from './background/requests.js';
import { injectOncePerSession, injectOpenTabs, sitesAdded, syncContentScripts } from './background/sites.js';
import { dispatchToolbar } from './background/toolbar.js';
import { LOCAL, api } from './shared/settings.js';

const report = (what) => (err) => console.error(`LowKey ${what}:`, err);

api.runtime.onInstalled.addListener(() => {
  createMenus().catch(report('menus'));
  syncContentScripts().catch(report('content scripts'));
  // Older versions kept the last photo's thumbnails in storage.local (on disk): now in memory.
  api.storage.local.remove(LOCAL.preview).catch(report('storage'));
});

api.runtime.onStartup.addListener(() => {
  syncContentScripts().catch(report('content scripts'));
});

api.action.onClicked.addListener(() => {
  togglePause().catch(report('pause'));
});

api.contextMenus.onClicked.addListener((info, tab) => {
  if (info.menuItemId === MENU_POPUP) openPopup(tab).catch(report('popup'));
});

api.runtime.onConnect.addListener((port) => {
  if (port.name === PROTECT_PORT && port.sender?.id === api.runtime.id) servePort(port);
});

api.runtime.onMessage.addListener(onPageMessage);
api.runtime.onMessage.addListener(onFrameMessage);

api.storage.onChanged.addListener((changes, area) => {
  if (area !== 'local') return;
  if (LOCAL.sites in changes) {
    syncContentScripts().catch(report('content scripts'));
    // content.js already runs in every tab and follows the list; the page-world script is
    // injected into the open tabs of the sites just added.
    const added = sitesAdded(changes[LOCAL.sites]);
    if (added.length) injectOpenTabs({ only: added }).catch(report('content scripts'));
  }
  if (LOCAL.paused in changes) dispatchToolbar({ type: 'sync' }).catch(report('toolbar'));
});

// A worker that starts again has no running job: draw the button from what storage holds.
dispatchToolbar({ type: 'restart' }).catch(report('toolbar'));
// Installed, updated, reloaded or enabled (a fresh extension session): the tabs already open
// get the content scripts, which the manifest's declaration gives only to pages loaded later.
injectOncePerSession().catch(report('content scripts'));
