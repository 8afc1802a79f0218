/**
 * The last results, for the popup: a summary of each (storage.local) and small before/after
 * thumbnails of the last photo (JPEG data URLs, made with OffscreenCanvas where the browser can
 * decode the photo; HEIC has none), in storage.session: thumbnails of the user's photos are kept
 * in memory only, never on disk.
 */
import { encodeBase64 } from '../lib/base64.js';
import { summariseResult } from '../lib/report.js';
import { LOCAL, MAX_RESULTS, SESSION, api } from '../shared/settings.js';

/** The longest side of a thumbnail, in pixels. */
export const THUMBNAIL_PX = 160;

let chain = Promise.resolve();

/**
 * Record one outcome (serialised with the others).
 * @param {{name: string, site: string|null, report?: object, measured?: boolean, status: string,
 *   before?: {bytes: Uint8Array, mime: string}, after?: {bytes: Uint8Array, mime: string}}} outcome
 * @returns {Promise<void>}
 */
export function recordResult(outcome) {
  chain = chain.then(() => record(outcome)).catch((err) => console.error('LowKey results:', err));
  return chain;
}

async function record({ name, site, report = {}, measured, status, before, after }) {
  const summary = summariseResult({ name, site, report, measured, status });
  const stored = await api.storage.local.get(LOCAL.results);
  const results = [summary, ...(Array.isArray(stored[LOCAL.results]) ? stored[LOCAL.results] : [])]
    .slice(0, MAX_RESULTS);
  if (before && after) {
    const [small, smallAfter] = await Promise.all([thumbnail(before), thumbnail(after)]);
    if (small && smallAfter) {
      await api.storage.session.set({
        [SESSION.preview]: { name, time: summary.time, before: small, after: smallAfter },
      });
    } else {
      await api.storage.session.remove(SESSION.preview); // never another photo's preview as this one's
    }
  }
  await api.storage.local.set({ [LOCAL.results]: results });
}

/**
 * A small JPEG data URL of an image, or null when the browser cannot decode it here.
 * @param {{bytes: Uint8Array, mime: string}} image
 * @returns {Promise<string|null>}
 */
export async function thumbnail({ bytes, mime }) {
  if (typeof createImageBitmap !== 'function' || typeof OffscreenCanvas !== 'function') return null;
  try {
    const bitmap = await createImageBitmap(new Blob([bytes], { type: mime }));
    const scale = Math.min(1, THUMBNAIL_PX / Math.max(bitmap.width, bitmap.height));
    const width = Math.max(1, Math.round(bitmap.width * scale));
    const height = Math.max(1, Math.round(bitmap.height * scale));
    const canvas = new OffscreenCanvas(width, height);
    const context = canvas.getContext('2d');
    context.fillStyle = '#fff'; // transparent PNGs on white, not JPEG's black
    context.fillRect(0, 0, width, height);
    context.drawImage(bitmap, 0, 0, width, height);
    bitmap.close?.();
    const blob = await canvas.convertToBlob({ type: 'image/jpeg', quality: 0.8 });
    return `data:image/jpeg;base64,${encodeBase64(new Uint8Array(await blob.arrayBuffer()))}`;
  } catch {
    return null;
  }
}
