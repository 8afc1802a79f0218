/**
 * The native-messaging vocabulary the extension shares with `lowkey-native-host`.
 *
 * The one definition is the host's JSON Schema, `native_host/messages.schema.json` (copied into
 * the package as `messages.schema.json`); the constants below are checked against it by
 * `test/messages.test.mjs` and by the build, so a drift fails before anything ships.
 */

/** The protocol version the host announces in `hello`. */
export const PROTOCOL = 1;

/** Requests the extension may send (schema `$defs.request`). */
export const REQUEST_TYPES = Object.freeze(['hello', 'status', 'protect', 'cancel', 'pause', 'resume']);

/** Error codes the host sends (schema `$defs.message_error.properties.code.enum`). */
export const HOST_ERROR_CODES = Object.freeze([
  'daemon-down', 'starting', 'paused', 'bad-image', 'no-face', 'too-large', 'timeout',
  'cancelled', 'busy', 'bad-message', 'internal',
]);

/** Progress phases (schema `$defs.message_progress.properties.phase.enum`). */
export const PHASES = Object.freeze([
  'starting', 'queued', 'decode', 'detect', 'attack', 'floor', 'encode', 'measure', 'done',
]);

/**
 * Codes the extension itself gives a failed request (never sent by the host):
 * `disconnected` (the host's pipe closed), `host-missing` (the browser cannot start the host),
 * `integrity` (the chunks of a result failed their count, size or sha256 check), `skipped`
 * (protection was paused while the photo waited: it goes as it is), `unsupported-format` (an
 * image LowKey cannot protect, AVIF or GIF say: the user chooses), `extension` (a bug in the
 * extension itself; what the user sees is this generic sentence, the details go to the console).
 * `timeout` and `too-large` are shared with the host.
 */
export const LOCAL_ERROR_CODES = Object.freeze([
  'disconnected', 'host-missing', 'integrity', 'skipped', 'unsupported-format', 'extension',
]);

/** Words for a person, per error code. */
const EXPLANATIONS = {
  'daemon-down': 'the LowKey daemon is not running',
  starting: 'the LowKey daemon is still starting',
  paused: 'LowKey is paused on this computer',
  'bad-image': 'LowKey cannot read this image',
  'no-face': 'no face was found in this photo',
  'too-large': 'the photo is too large for LowKey',
  timeout: 'protecting the photo took too long',
  cancelled: 'cancelled',
  busy: 'LowKey is busy with other photos',
  'bad-message': 'the extension and the native host disagree (a bug)',
  internal: 'the native host failed (its log has the details)',
  disconnected: 'the connection to the LowKey native host was lost',
  'host-missing': 'the LowKey native host is not installed for this browser',
  integrity: 'the protected photo arrived damaged',
  skipped: 'LowKey is paused: the photo goes as it is',
  'unsupported-format': 'LowKey cannot protect this format: upload it as it is, or cancel',
  extension: 'LowKey hit an internal error (the browser console has the details)',
};

const KNOWN_CODES = new Set([...HOST_ERROR_CODES, ...LOCAL_ERROR_CODES]);

/**
 * A sentence for a person about an error code.
 * @param {string} code an error code (host or local)
 * @returns {string}
 */
export function explainError(code) {
  return EXPLANATIONS[code] ?? `unexpected error (${code})`;
}

/** Human names of the phases, for the progress indicator. */
const PHASE_LABELS = {
  starting: 'starting LowKey', queued: 'waiting', decode: 'reading', detect: 'finding faces',
  attack: 'protecting', floor: 'checking quality', encode: 'saving', measure: 'measuring',
  done: 'done',
};

/**
 * A short label for a progress phase.
 * @param {string} phase
 * @returns {string}
 */
export function phaseLabel(phase) {
  return PHASE_LABELS[phase] ?? String(phase ?? '');
}

/**
 * An error with a code from {@link HOST_ERROR_CODES} or {@link LOCAL_ERROR_CODES}.
 */
export class LowKeyError extends Error {
  /**
   * @param {string} code
   * @param {string} [message] defaults to {@link explainError}(code)
   */
  constructor(code, message) {
    super(message || explainError(code));
    this.name = 'LowKeyError';
    this.code = code;
  }
}

/**
 * What a person may be shown of any error: a {@link LowKeyError} (or a plain object with a known
 * `code`) keeps its code and message; anything else (a JavaScript exception, whose text means
 * nothing to a person and may say too much) becomes the generic internal error.
 * @param {unknown} err
 * @returns {LowKeyError}
 */
export function toLowKeyError(err) {
  if (err instanceof LowKeyError) return err;
  if (typeof err?.code === 'string' && KNOWN_CODES.has(err.code)) {
    return new LowKeyError(err.code, typeof err.message === 'string' ? err.message : '');
  }
  return new LowKeyError('extension');
}
