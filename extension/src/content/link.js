/**
 * The content script's line to the background: one runtime port (made on demand) carrying
 * protect requests by key (see background/protect.js for the messages). When the port closes
 * (the worker stopped, the extension was reloaded) every waiting photo fails with
 * `disconnected`: the page gets nothing until the user chooses.
 */
import { LowKeyError } from '../lib/messages.js';

export const PROTECT_PORT = 'lowkey-protect';

/**
 * How long a photo may wait with no message at all from the background (no progress, no
 * answer) before it fails (`timeout`: the user chooses). Longer than the native client's own
 * protect timeout (330 s of silence), so this only catches a background that lost the request.
 */
export const SILENCE_MS = 6 * 60 * 1000;

/** Sends photos to the background and waits for them. */
export class BackgroundLink {
  /**
   * @param {object} api the browser's extension API
   * @param {{silenceMs?: number}} [options]
   */
  constructor(api, { silenceMs = SILENCE_MS } = {}) {
    this.api = api;
    this.silenceMs = silenceMs;
    this.port = null;
    this.pending = new Map();
    this.next = 1;
  }

  /** (Re)start a photo's silence timer. */
  _watch(key, entry) {
    clearTimeout(entry.timer);
    entry.timer = setTimeout(() => {
      if (this.pending.get(key) !== entry) return;
      this.pending.delete(key);
      try {
        this.port?.postMessage({ type: 'cancel', key });
      } catch {
        // the port is gone: so is the request
      }
      entry.reject(new LowKeyError('timeout',
        `LowKey's background did not answer for ${Math.round(this.silenceMs / 60000)} minutes`));
    }, this.silenceMs);
  }

  _ensurePort() {
    if (this.port) return this.port;
    const port = this.api.runtime.connect({ name: PROTECT_PORT });
    this.port = port;
    port.onMessage.addListener((message) => this._receive(message));
    port.onDisconnect.addListener(() => {
      if (this.port === port) this.port = null;
      const error = new LowKeyError('disconnected', 'the connection to LowKey\'s background was lost');
      const entries = [...this.pending.values()];
      this.pending.clear();
      for (const entry of entries) {
        clearTimeout(entry.timer);
        entry.reject(error);
      }
    });
    return port;
  }

  _receive(message) {
    const entry = this.pending.get(message?.key);
    if (!entry) return;
    if (message.type === 'progress') {
      this._watch(message.key, entry);
      entry.onProgress?.({ phase: message.phase, percent: message.percent });
      return;
    }
    clearTimeout(entry.timer);
    this.pending.delete(message.key);
    if (message.type === 'result') {
      entry.resolve({ data: message.data, mime: message.mime, recognition: message.recognition ?? null });
    }
    else if (message.type === 'skip') entry.resolve({ skip: true });
    else entry.reject(new LowKeyError(String(message.code ?? 'internal'), message.message));
  }

  /**
   * Protect one photo.
   * @param {{name: string, mime: string, data: string}} photo data: base64
   * @param {{signal?: AbortSignal, onProgress?: Function}} [options]
   * @returns {Promise<{data?: string, mime?: string, recognition?: object|null, skip?: boolean}>}
   *   recognition: what unattacked recognisers made of it (lib/report.js recognitionCheck)
   */
  protect(photo, { signal, onProgress } = {}) {
    const key = `${Date.now().toString(36)}-${this.next++}`;
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(new LowKeyError('cancelled'));
        return;
      }
      const entry = { resolve, reject, onProgress, timer: null };
      this.pending.set(key, entry);
      this._watch(key, entry);
      signal?.addEventListener('abort', () => {
        if (this.pending.get(key) !== entry) return;
        this.pending.delete(key);
        clearTimeout(entry.timer);
        try {
          this.port?.postMessage({ type: 'cancel', key });
        } catch {
          // the port is gone: so is the request
        }
        reject(new LowKeyError('cancelled'));
      }, { once: true });
      try {
        this._ensurePort().postMessage({ type: 'protect', key, ...photo });
      } catch (err) {
        this.pending.delete(key);
        clearTimeout(entry.timer);
        this.port = null;
        console.error('LowKey: the background could not be reached:', err);
        reject(new LowKeyError('disconnected', 'the connection to LowKey\'s background was lost'));
      }
    });
  }
}
