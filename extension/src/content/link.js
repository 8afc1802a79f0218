/**
 * The content script's line to the background: one runtime port (made on demand) carrying
 * protect requests by key (see background/protect.js for the messages). When the port closes
 * (the worker stopped, the extension was reloaded) every waiting photo fails with
 * `disconnected`: the page gets nothing until the user chooses.
 */
import { LowKeyError } from '../lib/messages.js';

export const PROTECT_PORT = 'lowkey-protect';

/** Sends photos to the background and waits for them. */
export class BackgroundLink {
  /** @param {object} api the browser's extension API */
  constructor(api) {
    this.api = api;
    this.port = null;
    this.pending = new Map();
    this.next = 1;
  }

  _ensurePort() {
    if (this.port) return this.port;
    const port = this.api.runtime.connect({ name: PROTECT_PORT });
    this.port = port;
    port.onMessage.addListener((message) => this._receive(message));
    port.onDisconnect.addListener(() => {
      if (this.port === port) this.port = null;
      const error = new LowKeyError('disconnected', 'the connection to LowKey\'s background was lost');
      for (const entry of this.pending.values()) entry.reject(error);
      this.pending.clear();
    });
    return port;
  }

  _receive(message) {
    const entry = this.pending.get(message?.key);
    if (!entry) return;
    if (message.type === 'progress') {
      entry.onProgress?.({ phase: message.phase, percent: message.percent });
      return;
    }
    this.pending.delete(message.key);
    if (message.type === 'result') entry.resolve({ data: message.data, mime: message.mime });
    else if (message.type === 'skip') entry.resolve({ skip: true });
    else entry.reject(new LowKeyError(String(message.code ?? 'internal'), message.message));
  }

  /**
   * Protect one photo.
   * @param {{name: string, mime: string, data: string}} photo data: base64
   * @param {{signal?: AbortSignal, onProgress?: Function}} [options]
   * @returns {Promise<{data?: string, mime?: string, skip?: boolean}>}
   */
  protect(photo, { signal, onProgress } = {}) {
    const key = `${Date.now().toString(36)}-${this.next++}`;
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(new LowKeyError('cancelled'));
        return;
      }
      this.pending.set(key, { resolve, reject, onProgress });
      signal?.addEventListener('abort', () => {
        if (!this.pending.delete(key)) return;
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
        this.port = null;
        reject(new LowKeyError('disconnected', String(err?.message ?? err)));
      }
    });
  }
}
