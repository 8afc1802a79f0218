/**
 * Requests from the extension's own pages (popup, options) over runtime.sendMessage:
 * `{type: 'toggle'}` → setPaused's answer; `{type: 'daemon'}` → `{hello, status}` or `{error}`
 * (the host's answers, which start the daemon when it is down).
 * Sites, pause state and results are read from storage by the pages themselves.
 */
import { toLowKeyError } from '../lib/messages.js';
import { api } from '../shared/settings.js';
import { native } from './native.js';
import { togglePause } from './pause.js';
import { dispatchToolbar } from './toolbar.js';

/**
 * The daemon's state, through the host.
 * @returns {Promise<{hello?: object, status?: object, error?: {code: string, message: string}}>}
 */
export async function daemonInfo() {
  try {
    const [hello, status] = await Promise.all([native().request('hello', {
      extension: { version: api.runtime.getManifest().version, browser: navigator.userAgent },
    }), native().request('status')]);
    if (status.daemon?.ready) await dispatchToolbar({ type: 'ok' });
    return { hello, status };
  } catch (err) {
    const error = toLowKeyError(err); // a person reads it: never a raw exception's text
    return { error: { code: error.code, message: error.message } };
  }
}

/**
 * runtime.onMessage listener for the extension's pages (not content scripts).
 * @returns {boolean|undefined} true when it answers later
 */
export function onPageMessage(message, sender, sendResponse) {
  if (sender.id !== api.runtime.id || !sender.url?.startsWith(api.runtime.getURL(''))) return undefined;
  const handlers = { toggle: togglePause, daemon: daemonInfo };
  const handler = handlers[message?.type];
  if (!handler) return undefined;
  handler().then(sendResponse, (err) => {
    console.error('LowKey:', err);
    const error = toLowKeyError(err);
    sendResponse({ error: { code: error.code, message: error.message } });
  });
  return true;
}
