/**
 * Pausing and resuming protection: the user's choice is stored (content scripts read it), the
 * toolbar shows it, and the daemon is told (`pause`/`resume`), so it pauses machine-wide too.
 */
import { LowKeyError } from '../lib/messages.js';
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
    const error = err instanceof LowKeyError ? err : new LowKeyError('internal', String(err));
    if (NOTHING_TO_TELL.has(error.code)) return { paused, daemon: 'absent' };
    await dispatchToolbar({ type: 'error', message: error.message });
    return { paused, daemon: 'failed', error: error.message };
  }
}

/**
 * One click: pause when on, resume when paused.
 * @returns {Promise<object>} see setPaused
 */
export async function togglePause() {
  return setPaused(!(await getPaused()));
}
