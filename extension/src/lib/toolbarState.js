/**
 * The toolbar button's state machine: what the button shows (icon, badge, title) from a small
 * model `{paused, jobs, error}` kept in `storage.session`, and how events change that model.
 *
 * States, in order of precedence:
 * - `paused`: protection is off (one click resumes);
 * - `working`: photos are being protected (the badge counts them);
 * - `error`: the last attempt to reach the daemon failed (badge "!", the title says why);
 * - `on`: protection is on and nothing is happening.
 */

/** The four states. */
export const TOOLBAR_STATES = Object.freeze(['on', 'paused', 'working', 'error']);

/** Icon sizes the build draws for each state (`icons/<state>-<size>.png`). */
export const ICON_SIZES = Object.freeze([16, 32, 48, 128]);

const COLORS = { on: '#1e8e3e', paused: '#5f6368', working: '#1a73e8', error: '#d93025' };

/**
 * A fresh model.
 * @param {{paused?: boolean}} [init]
 * @returns {{paused: boolean, jobs: number, error: string|null}}
 */
export function initialToolbar({ paused = false } = {}) {
  return { paused: Boolean(paused), jobs: 0, error: null };
}

/**
 * The model after an event (the model itself is never changed).
 *
 * Events: `toggle` (the button was clicked), `pause`, `resume`, `job-started`, `job-ended`
 * (`{ok: boolean, error?: string}`: a failure that is the daemon's sets the error),
 * `error` (`{message}`), `ok` (the daemon answered: clears the error), `restart` (the worker
 * started again: no job can still be running).
 * @param {{paused: boolean, jobs: number, error: string|null}} model
 * @param {{type: string, [k: string]: any}} event
 * @returns {{paused: boolean, jobs: number, error: string|null}}
 */
export function reduceToolbar(model, event) {
  const m = { ...initialToolbar(), ...model };
  switch (event?.type) {
    case 'toggle':
      return { ...m, paused: !m.paused, error: m.paused ? m.error : null };
    case 'pause':
      return { ...m, paused: true };
    case 'resume':
      return { ...m, paused: false };
    case 'job-started':
      return { ...m, jobs: m.jobs + 1 };
    case 'job-ended':
      return {
        ...m,
        jobs: Math.max(0, m.jobs - 1),
        error: event.ok ? null : (event.error ?? m.error),
      };
    case 'error':
      return { ...m, error: String(event.message ?? 'error') };
    case 'ok':
      return { ...m, error: null };
    case 'restart':
      return { ...m, jobs: 0 };
    default:
      return m;
  }
}

/**
 * The state a model shows.
 * @param {{paused: boolean, jobs: number, error: string|null}} model
 * @returns {'on'|'paused'|'working'|'error'}
 */
export function toolbarState(model) {
  if (model.paused) return 'paused';
  if (model.jobs > 0) return 'working';
  if (model.error) return 'error';
  return 'on';
}

/**
 * What the button shows for a model.
 * @param {{paused: boolean, jobs: number, error: string|null}} model
 * @returns {{state: string, icon: Object<string, string>, badgeText: string, badgeColor: string, title: string}}
 */
export function toolbarView(model) {
  const state = toolbarState(model);
  const icon = Object.fromEntries(ICON_SIZES.map((size) => [size, `icons/${state}-${size}.png`]));
  const badgeText = {
    on: '', paused: 'off', working: String(Math.min(model.jobs, 99)), error: '!',
  }[state];
  const title = {
    on: 'LowKey: photos are protected on enabled sites (click to pause)',
    paused: 'LowKey is paused: photos are uploaded as they are (click to resume)',
    working: `LowKey is protecting ${model.jobs} photo${model.jobs === 1 ? '' : 's'} (click to pause)`,
    error: `LowKey: ${model.error} (click to pause)`,
  }[state];
  return { state, icon, badgeText, badgeColor: COLORS[state], title };
}
