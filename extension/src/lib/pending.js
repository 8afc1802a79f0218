/**
 * Requests waiting for their answer over a port, by id: the bookkeeping that the extension's two
 * request/answer links share, {@link NativeClient} (background <-> native host) and
 * `BackgroundLink` (content script <-> background).
 *
 * - Each request settles exactly once: its answer, an error, its timeout, its abort signal, or
 *   {@link PendingRequests#failAll} when the port is lost.
 * - Its timeout counts from its last sign of life ({@link PendingRequests#touch} on any message
 *   with its id), so a long request that keeps reporting progress lives on and a silent one fails.
 * - On a timeout or an abort, `cancelRemote(entry)` tells the other side to stop (fire and
 *   forget), then the request fails with `timeoutError(entry)` or `cancelled`.
 *
 * Browser-independent (timers only): Node tests drive it directly.
 */
import { LowKeyError } from './messages.js';

export class PendingRequests {
  /**
   * @param {object} options
   * @param {(entry: object) => LowKeyError} options.timeoutError the error of a silent request
   * @param {(entry: object) => void} [options.cancelRemote] asks the other side to drop a request
   *   that timed out or was aborted
   * @param {() => void} [options.onEmpty] called when the last pending request settles
   */
  constructor({ timeoutError, cancelRemote, onEmpty } = {}) {
    if (typeof timeoutError !== 'function') throw new TypeError('PendingRequests needs timeoutError()');
    this._timeoutError = timeoutError;
    this._cancelRemote = cancelRemote ?? (() => {});
    this._onEmpty = onEmpty ?? (() => {});
    this._entries = new Map();
  }

  /** How many requests are waiting. */
  get size() {
    return this._entries.size;
  }

  /** The ids of the requests waiting. */
  get ids() {
    return [...this._entries.keys()];
  }

  /**
   * The waiting request `id`, or undefined (unknown, or settled already).
   * @param {string} id
   * @returns {object|undefined}
   */
  get(id) {
    return this._entries.get(id);
  }

  /**
   * Start waiting for request `id`; its timer starts now.
   * @param {string} id not waiting already (an Error otherwise)
   * @param {object} request
   * @param {(value: any) => void} request.resolve
   * @param {(error: Error) => void} request.reject
   * @param {number} request.timeoutMs inactivity timeout in milliseconds
   * @param {AbortSignal} [request.signal] aborting cancels the request
   * @returns {object} the entry: the request's fields, plus `id` and `done`; other fields the
   *   caller needs (its type, a progress listener) may be given and are kept
   */
  add(id, { resolve, reject, timeoutMs, signal, ...fields }) {
    if (this._entries.has(id)) throw new Error(`request id ${id} is already in flight`);
    const entry = { ...fields, id, resolve, reject, timeoutMs, signal, timer: null, done: false,
      held: false };
    entry.onAbort = () => this._stop(entry, new LowKeyError('cancelled'));
    signal?.addEventListener('abort', entry.onAbort, { once: true });
    this._entries.set(id, entry);
    this.touch(entry);
    return entry;
  }

  /**
   * A sign of life of `entry`: its timeout counts again from now (unless it is held).
   * @param {object} entry
   */
  touch(entry) {
    if (entry.done || entry.held) return;
    clearTimeout(entry.timer);
    entry.timer = setTimeout(() => this._stop(entry, this._timeoutError(entry)), entry.timeoutMs);
  }

  /**
   * Stop `entry`'s timer for good: its answer is in and only being checked.
   * @param {object} entry
   */
  hold(entry) {
    entry.held = true;
    clearTimeout(entry.timer);
  }

  /**
   * Settle `entry` once: reject with `error` when given, else resolve with `value`.
   * @param {object} entry
   * @param {Error|null} error
   * @param {any} [value]
   */
  settle(entry, error, value) {
    if (entry.done) return;
    entry.done = true;
    clearTimeout(entry.timer);
    entry.signal?.removeEventListener('abort', entry.onAbort);
    this._entries.delete(entry.id);
    if (error) entry.reject(error);
    else entry.resolve(value);
    if (this._entries.size === 0) this._onEmpty();
  }

  /**
   * Fail every waiting request with `error` (the port was lost).
   * @param {Error} error
   */
  failAll(error) {
    for (const entry of [...this._entries.values()]) this.settle(entry, error);
  }

  _stop(entry, error) {
    if (entry.done) return;
    this._cancelRemote(entry);
    this.settle(entry, error);
  }
}
