/**
 * The toolbar button has no default popup: one click pauses or resumes. The popup (status,
 * this site, last results) opens from the button's context menu (right click), and from the
 * options page.
 */
import { api } from '../shared/settings.js';

export const MENU_POPUP = 'lowkey-popup';

/**
 * Create the button's context menu (at install: menus persist).
 * @returns {Promise<void>}
 */
export async function createMenus() {
  await api.contextMenus.removeAll();
  api.contextMenus.create({
    id: MENU_POPUP,
    title: 'LowKey: status, this site and last results',
    contexts: ['action'],
  }, () => void api.runtime.lastError);
}

/**
 * Open the popup for a tab: as the button's popup where the browser allows it (set for this
 * one opening), else in a new tab.
 * @param {{id?: number}|undefined} tab the tab the menu was used on
 */
export async function openPopup(tab) {
  const page = `popup.html${tab?.id !== undefined ? `?tab=${tab.id}` : ''}`;
  // No await before openPopup: Firefox needs it within the user's action.
  const set = api.action.setPopup({ popup: page });
  try {
    await api.action.openPopup();
  } catch {
    await api.tabs.create({ url: api.runtime.getURL(page) });
  } finally {
    await set.catch(() => {});
    await api.action.setPopup({ popup: '' });
  }
}
