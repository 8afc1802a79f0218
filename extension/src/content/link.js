/**
 * The content script's line to the background: one runtime port (made on demand) carrying
 * protect requests by key (see background/protect.js for the messages). When the port closes
 * (the worker stopped, the extension was reloaded) every waiting photo fails with
 * `disconnected`: the page gets nothing until the user chooses.
 */
import { LowKeyError } from '../lib/messages.js';
import { PendingRequests } from '../lib/pending.js';

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
    this.pending = new PendingRequests({
      timeoutError: () => new LowKeyError('timeout',
        `LowKey's background did not answer for ${Math.round(this.silenceMs / 60000)} minutes`),
      cancelRemote: (entry) => this._cancel(entry.id),
    });
    this.next = 1;
  }

  _cancel(key) {
    try {
      this.port?.postMessage({ type: 'cancel', key });
    } catch {
      // the port is gone: so is the request
    }
  }

  _ensurePort() {
    if (this.port) return this.port;
    const port = this.api.runtime.connect({ name: PROTECT_PORT });
    this.port = port;
    port.onMessage.addListener((message) => this._receive(message));
    port.onDisconnect.addListener(() => {
      if (this.port === port) this.port = null;
      this.pending.failAll(lost());
    });
    return port;
  }

  _receive(message) {
    const entry = this.pending.get(message?.key);
    if (!entry) return;
    if (message.type === 'progress') {
      this.pending.touch(entry);
      entry.onProgress?.({ phase: message.phase, percent: message.percent });
      return;
    }
    if (message.type === 'result') {
      this.pending.settle(entry, null,
        { data: message.data, mime: message.mime, recognition: message.recognition ?? null });
    }
    else if (message.type === 'skip') this.pending.settle(entry, null, { skip: true });
    else {
      this.pending.settle(entry,
        new LowKeyError(String(message.code ?? 'internal'), message.message));
    }
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
      const entry = this.pending.add(key,
        { resolve, reject, onProgress, signal, timeoutMs: this.silenceMs });
      try {
        this._ensurePort().postMessage({ type: 'protect', key, ...photo });
      } catch (err) {
        this.port = null;
        console.error('LowKey: the background could not be reached:', err);
        this.pending.settle(entry, lost());
      }
    });
  }
}

function lost() {
  return new LowKeyError('disconnected', 'the connection to LowKey\'s background was lost');
}
