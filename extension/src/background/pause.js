/**
 * Pausing and resuming protection: the user's choice is stored (content scripts read it), the
 * toolbar shows it, and the daemon is told (`pause`/`resume`), so it pauses machine-wide too.
 */
import { toLowKeyError } from '../lib/messages.js';
import { LOCAL, api, getPaused } from '../shared/settings.js';
import { native } from './native.js';
import { dispatchToolbar } from './toolbar.js';

/** Codes that mean "no daemon to tell": not an error for pause/resume (a new one starts unpaused). */
const NOTHING_TO_TELL = new Set(['daemon-down', 'starting']);

/**
 * Pause or resume.
 * @param {boolean} paused
 * @returns {Promise<{paused: boolean, daemon: 'told'|'absent'|'failed', error?: string}>}
 */
export async function setPaused(paused) {
  await api.storage.local.set({ [LOCAL.paused]: paused });
  await dispatchToolbar({ type: paused ? 'pause' : 'resume' });
  try {
    await native().request(paused ? 'pause' : 'resume');
    await dispatchToolbar({ type: 'ok' });
    return { paused, daemon: 'told' };
  } catch (err) {
    const error = toLowKeyError(err); // a person reads it: never a raw exception's text
    if (NOTHING_TO_TELL.has(error.code)) return { paused, daemon: 'absent' };
    await dispatchToolbar({ type: 'error', message: error.message });
    return { paused, daemon: 'failed', error: error.message };
  }
}

let chain = Promise.resolve();

/**
 * One click: pause when on, resume when paused. Clicks are serialised: each reads the state the
 * one before it left (a fast double click pauses and resumes, in that order, and the daemon is
 * told both in that order).
 * @returns {Promise<object>} see setPaused
 */
export function togglePause() {
  const next = chain.then(async () => setPaused(!(await getPaused())));
  chain = next.catch(() => {});
  return next;
}
