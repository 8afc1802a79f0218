/**
 * The toolbar button: its model lives in storage.session (it survives the worker, not the
 * browser), changes go through {@link reduceToolbar} one at a time, and every change is drawn.
 */
import { initialToolbar, reduceToolbar, toolbarView } from '../lib/toolbarState.js';
import { LOCAL, SESSION, api } from '../shared/settings.js';

let chain = Promise.resolve();

/**
 * Apply an event to the toolbar's model and draw the result (serialised: no lost update).
 * @param {{type: string}} event see reduceToolbar
 * @returns {Promise<object>} the new model
 */
export function dispatchToolbar(event) {
  const next = chain.then(async () => {
    const [session, local] = await Promise.all([
      api.storage.session.get(SESSION.toolbar), api.storage.local.get(LOCAL.paused)]);
    const current = { ...initialToolbar(), ...session[SESSION.toolbar], paused: Boolean(local[LOCAL.paused]) };
    const model = reduceToolbar(current, event);
    await api.storage.session.set({ [SESSION.toolbar]: model });
    await draw(model);
    return model;
  });
  chain = next.catch((err) => console.error('LowKey toolbar:', err));
  return next;
}

/**
 * Draw a model on the button.
 * @param {object} model
 */
export async function draw(model) {
  const view = toolbarView(model);
  await Promise.all([
    api.action.setIcon({ path: view.icon }),
    api.action.setBadgeText({ text: view.badgeText }),
    api.action.setBadgeBackgroundColor({ color: view.badgeColor }),
    api.action.setTitle({ title: view.title }),
  ]);
}
