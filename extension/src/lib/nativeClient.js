/**
 * The client side of the native-messaging protocol (`native_host/messages.schema.json`).
 *
 * Browser-independent: it is given a `connect()` that returns a port shaped like
 * `runtime.connectNative()`'s (`postMessage`, `disconnect`, `onMessage.addListener`,
 * `onDisconnect.addListener`), so Node tests drive it with a fake port.
 *
 * - Every request gets a fresh id and a timeout ({@link PendingRequests}). The timeout counts from
 *   the request's last sign of life (any message with its id), so a long protection that keeps
 *   reporting progress lives on, and a silent one fails with code `timeout` (a protect request is
 *   then cancelled in the host).
 * - A `protect` request's chunks are assembled per id and checked against its `result`
 *   (count, size, sha256: {@link ChunkAssembler}); it resolves with the verified bytes only.
 * - When the port disconnects, every pending request fails with the reason, and the next request
 *   connects afresh: no connection state survives a disconnect.
 * - With nothing pending for `idleCloseMs`, the port is closed (the host exits; the browser may
 *   then let an idle service worker go).
 */
import { ChunkAssembler } from './chunks.js';
import { LowKeyError } from './messages.js';
import { PendingRequests } from './pending.js';

/** Default timeouts in milliseconds, per request type. */
export const DEFAULT_TIMEOUTS = Object.freeze({
  hello: 20_000,
  status: 20_000,
  pause: 20_000,
  resume: 20_000,
  cancel: 20_000,
  // The host waits up to 300 s for a daemon that loads its models, and says so only once.
  protect: 330_000,
});

let sequence = 0;

/**
 * A fresh request id: type, a counter and a random part (unique across worker restarts).
 * @param {string} type
 * @returns {string}
 */
export function newRequestId(type) {
  sequence += 1;
  const random = Math.random().toString(36).slice(2, 10);
  return `${type}-${Date.now().toString(36)}-${sequence}-${random}`;
}

/**
 * Why a port disconnected, as a {@link LowKeyError}.
 * @param {string|undefined} reason the browser's message (`runtime.lastError` or `port.error`)
 * @returns {LowKeyError}
 */
export function disconnectError(reason) {
  const text = String(reason ?? '');
  if (/not found|no such native application|not installed|not allowed|forbidden/i.test(text)) {
    return new LowKeyError('host-missing',
      `the LowKey native host could not be started (${text}); run the LowKey installer`);
  }
  return new LowKeyError('disconnected',
    text ? `the connection to the LowKey native host was lost (${text})`
      : 'the connection to the LowKey native host was lost');
}

/** Talks to the native host over one port at a time. */
export class NativeClient {
  /**
   * @param {object} options
   * @param {() => object} options.connect returns a new port (e.g. `() => chrome.runtime.connectNative(name)`)
   * @param {(port: object) => (string|undefined)} [options.disconnectReason] reads why a port closed
   * @param {Partial<typeof DEFAULT_TIMEOUTS>} [options.timeouts]
   * @param {number} [options.idleCloseMs] close the port after this long with nothing pending
   * @param {(event: {type: string, [k: string]: any}) => void} [options.onEvent] connection events
   *   (`connected`, `disconnected` with `error`, `stray` for a message nobody waits for)
   */
  constructor({ connect, disconnectReason, timeouts = {}, idleCloseMs = 30_000, onEvent } = {}) {
    if (typeof connect !== 'function') throw new TypeError('NativeClient needs connect()');
    this._connect = connect;
    this._reason = disconnectReason ?? defaultDisconnectReason;
    this.timeouts = { ...DEFAULT_TIMEOUTS, ...timeouts };
    this.idleCloseMs = idleCloseMs;
    this._onEvent = onEvent ?? (() => {});
    this._port = null;
    this._pending = new PendingRequests({
      timeoutError: (entry) => new LowKeyError('timeout',
        `the LowKey native host did not answer for ${Math.round(entry.timeoutMs / 1000)} s`),
      cancelRemote: (entry) => this._cancelInHost(entry),
      onEmpty: () => this._armIdle(),
    });
    this._idleTimer = null;
  }

  /** Whether a port is open now. */
  get connected() {
    return this._port !== null;
  }

  /** The ids of the requests waiting for an answer. */
  get pendingIds() {
    return this._pending.ids;
  }

  /**
   * Send one request and wait for its answer.
   * @param {string} type one of REQUEST_TYPES
   * @param {object} [fields] the request's other fields
   * @param {object} [options]
   * @param {number} [options.timeoutMs] inactivity timeout (default per type)
   * @param {(progress: object) => void} [options.onProgress] `progress` messages of this request
   * @param {AbortSignal} [options.signal] aborting cancels the request (in the host too, for protect)
   * @param {string} [options.id] the request's id (default: a fresh one)
   * @returns {Promise<object>} the answer message (for protect: `{result, bytes}`)
   */
  request(type, fields = {}, { timeoutMs, onProgress, signal, id } = {}) {
    const rid = id ?? newRequestId(type);
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(new LowKeyError('cancelled'));
        return;
      }
      if (this._pending.get(rid)) {
        reject(new LowKeyError('bad-message', `request id ${rid} is already in flight`));
        return;
      }
      this._clearIdle();
      const entry = this._pending.add(rid, {
        type, resolve, reject, onProgress, signal,
        timeoutMs: timeoutMs ?? this.timeouts[type] ?? DEFAULT_TIMEOUTS.hello,
        assembler: type === 'protect' ? new ChunkAssembler() : null,
      });
      try {
        this._ensurePort().postMessage({ ...fields, id: rid, type });
      } catch (err) {
        this._pending.settle(entry, disconnectError(err?.message));
      }
    });
  }

  /**
   * Protect one photo.
   * @param {{name: string, mime: string, data: string, preset?: string, strength?: number}} photo
   *   `data` is the file as base64
   * @param {{onProgress?: Function, signal?: AbortSignal, timeoutMs?: number, id?: string}} [options]
   * @returns {Promise<{result: object, bytes: Uint8Array}>} the host's result and the checked file
   */
  protect(photo, options = {}) {
    return this.request('protect', photo, options);
  }

  /**
   * Close the port (if open) and fail what is pending with `reason`.
   * @param {string} [reason]
   */
  disconnect(reason = 'closed by the extension') {
    const port = this._port;
    this._port = null;
    this._clearIdle();
    if (port) {
      try {
        port.disconnect();
      } catch {
        // already closed
      }
    }
    this._pending.failAll(new LowKeyError('disconnected', reason));
  }

  // -- internals ---------------------------------------------------------------------------

  _ensurePort() {
    if (this._port) return this._port;
    const port = this._connect();
    this._port = port;
    port.onMessage.addListener((message) => this._receive(port, message));
    port.onDisconnect.addListener(() => this._disconnected(port));
    this._onEvent({ type: 'connected' });
    return port;
  }

  _disconnected(port) {
    if (port !== this._port) return; // an old port: its requests were failed already
    this._port = null;
    this._clearIdle();
    const error = disconnectError(this._reason(port));
    this._onEvent({ type: 'disconnected', error });
    this._pending.failAll(error);
  }

  _receive(port, message) {
    if (port !== this._port) return;
    const entry = typeof message?.id === 'string' ? this._pending.get(message.id) : undefined;
    if (!entry) {
      this._onEvent({ type: 'stray', message });
      return;
    }
    const settle = (error, value) => this._pending.settle(entry, error, value);
    this._pending.touch(entry);
    switch (message.type) {
      case 'progress':
        try {
          entry.onProgress?.(message);
        } catch {
          // a listener's failure is not the request's
        }
        return;
      case 'chunk':
        if (!entry.assembler) {
          settle(new LowKeyError('bad-message', `a chunk for a ${entry.type} request`));
          return;
        }
        try {
          entry.assembler.add(message);
        } catch (err) {
          this._cancelInHost(entry);
          settle(err);
        }
        return;
      case 'result':
        if (!entry.assembler) {
          settle(new LowKeyError('bad-message', `a result for a ${entry.type} request`));
          return;
        }
        this._pending.hold(entry);
        entry.assembler.finish(message).then(
          (bytes) => settle(null, { result: message, bytes }),
          (err) => settle(err),
        );
        return;
      case 'error':
        settle(new LowKeyError(String(message.code), message.message));
        return;
      default:
        if (message.type === entry.type && entry.type !== 'protect') {
          settle(null, message);
        } else {
          settle(new LowKeyError('bad-message',
            `a ${message.type} message answered a ${entry.type} request`));
        }
    }
  }

  _cancelInHost(entry) {
    if (entry.type !== 'protect' || !this._port) return;
    const id = newRequestId('cancel');
    try {
      // Fire and forget: its answer is a stray message.
      this._port.postMessage({ id, type: 'cancel', target: entry.id });
    } catch {
      // the port is gone: so is the job
    }
  }

  _armIdle() {
    this._clearIdle();
    if (!this._port || !(this.idleCloseMs > 0)) return;
    this._idleTimer = setTimeout(() => {
      this._idleTimer = null;
      if (this._pending.size === 0 && this._port) {
        const port = this._port;
        this._port = null;
        try {
          port.disconnect();
        } catch {
          // already closed
        }
        this._onEvent({ type: 'idle-closed' });
      }
    }, this.idleCloseMs);
    this._idleTimer.unref?.(); // Node: never keeps a test alive
  }

  _clearIdle() {
    if (this._idleTimer) clearTimeout(this._idleTimer);
    this._idleTimer = null;
  }
}

function defaultDisconnectReason(port) {
  const api = globalThis.chrome ?? globalThis.browser;
  return port?.error?.message ?? api?.runtime?.lastError?.message;
}
