/**
 * Protecting photos for content scripts. Each page (frame) opens a runtime port named
 * {@link PROTECT_PORT}; over it:
 *
 * content → background: `{type: 'protect', key, name, mime, data}` (data: base64),
 *                       `{type: 'cancel', key}`
 * background → content: `{type: 'progress', key, phase, percent}`,
 *                       `{type: 'result', key, data, mime, recognition}` (data: the checked
 *                       file, base64; recognition: lib/report.js's recognitionCheck, or null),
 *                       `{type: 'error', key, code, message}`,
 *                       `{type: 'skip', key}` (protection is paused: let the original through)
 *
 * Each photo is sent with the preset the user chose (shared/presets.js; the host's `preset`).
 *
 * What is running lives in the port's closure: when the page goes away its photos are cancelled
 * in the host; when the worker dies the page's port closes and its photos fail safe.
 */
import { decodeBase64, encodeBase64 } from '../lib/base64.js';
import { LowKeyError, toLowKeyError } from '../lib/messages.js';
import { recognitionCheck } from '../lib/report.js';
import { findSite } from '../lib/siteList.js';
import { getPaused, getPreset, getSites } from '../shared/settings.js';
import { native } from './native.js';
import { recordResult } from './results.js';
import { dispatchToolbar } from './toolbar.js';

/** The name of the content scripts' ports. */
export const PROTECT_PORT = 'lowkey-protect';

/**
 * The longest base64 result posted to a content script. A runtime port carries messages up to
 * 64 MiB (Chromium throws beyond; the message is JSON); a larger result is answered `too-large`.
 */
export const MAX_POST_CHARS = 60 * 1024 * 1024;

/** Failures that say nothing about LowKey's health: the toolbar does not show them as errors. */
const NOT_AN_ERROR = new Set(['no-face', 'cancelled', 'bad-image', 'too-large']);

/**
 * Serve one content script's port.
 * @param {object} port a runtime.Port named PROTECT_PORT
 */
export function servePort(port, { maxPostChars = MAX_POST_CHARS } = {}) {
  const running = new Map(); // key -> AbortController
  let open = true;
  const close = () => {
    open = false;
    for (const controller of running.values()) controller.abort();
    running.clear();
  };
  const post = (message) => {
    if (!open) return;
    try {
      port.postMessage(message);
    } catch (err) {
      // A message the port would not carry: nothing after it could be trusted to arrive. Close
      // the port: the content side fails every photo it waits for (`disconnected`, the user
      // chooses) instead of waiting for answers that were dropped.
      console.error('LowKey: a message to the page failed, closing its port:', err);
      close();
      try {
        port.disconnect();
      } catch {
        // already gone
      }
    }
  };
  port.onDisconnect.addListener(close);
  port.onMessage.addListener((message) => {
    if (message?.type === 'protect' && typeof message.key === 'string' && !running.has(message.key)) {
      const controller = new AbortController();
      running.set(message.key, controller);
      protect(message, controller.signal, post, senderUrls(port), maxPostChars)
        .catch((err) => {
          console.error('LowKey protect:', err);
          post({ type: 'error', key: message.key, code: 'extension', message: toLowKeyError(err).message });
        })
        .finally(() => running.delete(message.key));
    } else if (message?.type === 'cancel') {
      running.get(message.key)?.abort();
    }
  });
}

/** The frame's address, then its page's (an upload frame of another origin is on its page's site). */
function senderUrls(port) {
  return [port.sender?.url, port.sender?.tab?.url].filter((url) => typeof url === 'string');
}

async function protect({ key, name, mime, data }, signal, post, urls, maxPostChars) {
  let site = null;
  let started = false;
  let ended = { type: 'job-ended', ok: true };
  // Everything in the try: whatever fails (storage, the toolbar, a malformed request) still
  // answers the content side, which would otherwise wait for ever.
  try {
    if (await getPaused()) {
      post({ type: 'skip', key });
      return;
    }
    const sites = await getSites();
    site = urls.map((url) => findSite(sites, url)).find((found) => found !== null) ?? null;
    started = true;
    await dispatchToolbar({ type: 'job-started' });
    const preset = await getPreset();
    const { result, bytes } = await native().protect({ name, mime, data, preset }, {
      signal,
      onProgress: ({ phase, percent }) => post({ type: 'progress', key, phase, percent }),
    });
    const encoded = encodeBase64(bytes);
    if (encoded.length > maxPostChars) {
      throw new LowKeyError('too-large', `the protected photo is ${Math.round(bytes.length / 1048576)} MB, `
        + 'more than the browser can hand to the page');
    }
    post({ type: 'result', key, data: encoded, mime: result.mime, recognition: recognitionCheck(result.report) });
    await recordResult({
      name, site, report: result.report, measured: result.measured, status: 'protected',
      before: { bytes: decodeBase64(data), mime },
      after: { bytes, mime: result.mime },
    });
  } catch (err) {
    if (!(err instanceof LowKeyError)) console.error('LowKey protect:', err);
    // What the user sees: a LowKey error's words, never a raw exception's text.
    const error = toLowKeyError(err);
    post({ type: 'error', key, code: error.code, message: error.message });
    if (error.code === 'no-face') await recordResult({ name, site, status: 'no-face', report: {} });
    if (!NOT_AN_ERROR.has(error.code)) ended = { type: 'job-ended', ok: false, error: error.message };
  } finally {
    if (started) await dispatchToolbar(ended).catch(() => {});
  }
}
