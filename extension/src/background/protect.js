/**
 * Protecting photos for content scripts. Each page (frame) opens a runtime port named
 * {@link PROTECT_PORT}; over it:
 *
 * content → background: `{type: 'protect', key, name, mime, data}` (data: base64),
 *                       `{type: 'cancel', key}`
 * background → content: `{type: 'progress', key, phase, percent}`,
 *                       `{type: 'result', key, data, mime}` (data: the checked file, base64),
 *                       `{type: 'error', key, code, message}`,
 *                       `{type: 'skip', key}` (protection is paused: let the original through)
 *
 * What is running lives in the port's closure: when the page goes away its photos are cancelled
 * in the host; when the worker dies the page's port closes and its photos fail safe.
 */
import { decodeBase64, encodeBase64 } from '../lib/base64.js';
import { LowKeyError } from '../lib/messages.js';
import { findSite } from '../lib/siteList.js';
import { getPaused, getSites } from '../shared/settings.js';
import { native } from './native.js';
import { recordResult } from './results.js';
import { dispatchToolbar } from './toolbar.js';

/** The name of the content scripts' ports. */
export const PROTECT_PORT = 'lowkey-protect';

/** Failures that say nothing about LowKey's health: the toolbar does not show them as errors. */
const NOT_AN_ERROR = new Set(['no-face', 'cancelled', 'bad-image', 'too-large']);

/**
 * Serve one content script's port.
 * @param {object} port a runtime.Port named PROTECT_PORT
 */
export function servePort(port) {
  const running = new Map(); // key -> AbortController
  let open = true;
  const post = (message) => {
    if (!open) return;
    try {
      port.postMessage(message);
    } catch {
      open = false;
    }
  };
  port.onDisconnect.addListener(() => {
    open = false;
    for (const controller of running.values()) controller.abort();
    running.clear();
  });
  port.onMessage.addListener((message) => {
    if (message?.type === 'protect' && typeof message.key === 'string' && !running.has(message.key)) {
      const controller = new AbortController();
      running.set(message.key, controller);
      protect(message, controller.signal, post, senderUrl(port))
        .finally(() => running.delete(message.key));
    } else if (message?.type === 'cancel') {
      running.get(message.key)?.abort();
    }
  });
}

function senderUrl(port) {
  return port.sender?.url ?? port.sender?.tab?.url ?? null;
}

async function protect({ key, name, mime, data }, signal, post, url) {
  if (await getPaused()) {
    post({ type: 'skip', key });
    return;
  }
  const site = url ? findSite(await getSites(), url) : null;
  await dispatchToolbar({ type: 'job-started' });
  let ended = { type: 'job-ended', ok: true };
  try {
    const { result, bytes } = await native().protect({ name, mime, data }, {
      signal,
      onProgress: ({ phase, percent }) => post({ type: 'progress', key, phase, percent }),
    });
    post({ type: 'result', key, data: encodeBase64(bytes), mime: result.mime });
    await recordResult({
      name, site, report: result.report, measured: result.measured, status: 'protected',
      before: { bytes: decodeBase64(data), mime },
      after: { bytes, mime: result.mime },
    });
  } catch (err) {
    const error = err instanceof LowKeyError ? err : new LowKeyError('internal', String(err?.message ?? err));
    post({ type: 'error', key, code: error.code, message: error.message });
    if (error.code === 'no-face') await recordResult({ name, site, status: 'no-face', report: {} });
    if (!NOT_AN_ERROR.has(error.code)) ended = { type: 'job-ended', ok: false, error: error.message };
  } finally {
    await dispatchToolbar(ended);
  }
}
