/**
 * The content script's controller (an ES module loaded by content.js): it keeps the page's
 * upload queue, reads the files, asks the background to protect the photos, shows the
 * indicator, and gives the page each batch once every photo in it is settled.
 */
import { decodeBase64, encodeBase64 } from '../lib/base64.js';
import { LowKeyError } from '../lib/messages.js';
import { SNIFF_BYTES, sniffImage, unprotectableFormat } from '../lib/imageType.js';
import { UploadQueue } from '../lib/uploadQueue.js';
import { Indicator } from './indicator.js';
import { BackgroundLink } from './link.js';
import { deliverDrop, deliverPaste, deliverToInput } from './transfer.js';

/** The largest photo sent for protection (base64 must stay under the browsers' 64 MiB). */
export const MAX_PHOTO_BYTES = 47 * 1024 * 1024;

/**
 * Start the controller for this frame (content/guard.js makes it on the first held photo).
 * @param {{api: object, state: {enabled: boolean, paused: boolean, decided: Promise<void>},
 *   ours: WeakSet<Event>, held: WeakMap<HTMLInputElement, object>, outputs: WeakSet<File>}} shared
 *   the guard's state (`held`: input -> the token of its newest held selection; `state`: kept
 *   up to date by content/frameState.js)
 * @param {object} [parts] replacements for tests: `win` (the frame's window), `makeIndicator`,
 *   `link`, `deliverToInput`, `deliverDrop`, `deliverPaste`
 * @returns {{fromInput: Function, release: Function, fromDrop: Function, fromPaste: Function}}
 */
export function startController({ api, state, ours, held, outputs }, parts = {}) {
  const win = parts.win ?? globalThis.window;
  const toInput = parts.deliverToInput ?? deliverToInput;
  const toDrop = parts.deliverDrop ?? deliverDrop;
  const toPaste = parts.deliverPaste ?? deliverPaste;

  const link = parts.link ?? new BackgroundLink(api);
  const inputBatches = new WeakMap(); // file input -> the token ({batch}) of its newest held choice
  const actions = {
    onCancel: (id) => queue.cancel(id),
    onRetry: (id) => queue.retry(id),
    onOriginal: (id) => queue.useOriginal(id),
  };
  const indicator = parts.makeIndicator?.(actions) ?? new Indicator(win.document, actions);
  const checks = new WeakMap(); // protected file -> what unattacked recognisers made of it
  const queue = new UploadQueue({
    protect: (item, ctx) => protectFile(link, item, ctx, outputs, checks),
    // The indicator says whether recognisers never attacked still match the protected photo.
    onChange: (item) => indicator.update(item.state === 'protected' && checks.has(item.output)
      ? { ...item, recognition: checks.get(item.output) } : item),
  });
  win.addEventListener('pagehide', () => queue.cancelAll());

  /**
   * Classify, queue, wait; then `deliver` the files (not called when nothing is left). Photos
   * held before the frame was known (content.js protects meanwhile) that turn out to be on a
   * site that is not enabled go to the page as they are.
   */
  async function run(files, deliver) {
    await state.decided;
    const entries = state.enabled ? await Promise.all(files.map(classify))
      : files.map((file) => ({ file, protectable: false }));
    const batch = queue.addBatch(entries);
    const done = batch.done.then(({ files: out, items }) => {
      if (out.length > 0) deliver(out);
      if (items.some((item) => item.state === 'no-face')) {
        indicator.notice('LowKey found no face in a photo: it was uploaded as it is.');
      }
      return items;
    });
    return { id: batch.id, done };
  }

  /** Cancel the batch of an input's held choice (a newer one replaced it). */
  function release(input, token) {
    if (inputBatches.get(input) === token) inputBatches.delete(input);
    if (token?.batch !== undefined) queue.cancelBatch(token.batch);
  }

  return {
    /**
     * A file input's new files, held back (content.js emptied the input and set `held` to
     * `token`). Only while `held` still holds this token may its files reach the input: a newer
     * choice (held or let through) replaces it, synchronously, in content.js.
     */
    async fromInput(input, files, token = {}) {
      const previous = inputBatches.get(input);
      inputBatches.set(input, token);
      if (previous && previous !== token) release(input, previous);
      const current = () => held.get(input) === token;
      const { id, done } = await run(files, (out) => {
        if (!current()) return; // replaced by a newer choice
        held.delete(input);
        toInput(input, out, ours);
      });
      token.batch = id;
      if (!current()) release(input, token); // replaced while its files were read
      await done;
      if (current()) held.delete(input);
      if (inputBatches.get(input) === token) inputBatches.delete(input);
    },
    /**
     * A newer choice on `input` went to the page as it is (not a photo, or LowKey is paused):
     * the held one is cancelled, so its protected files can never replace the user's choice.
     * content.js already forgot the hold.
     */
    release(input) {
      const token = inputBatches.get(input);
      if (token) release(input, token);
    },
    /** Dropped files, held back. */
    async fromDrop(target, files, strings, init) {
      await (await run(files, (out) => toDrop(target, out, strings, init, ours))).done;
    },
    /** Pasted files, held back. */
    async fromPaste(target, files, strings) {
      await (await run(files, (out) => toPaste(target, out, strings, ours))).done;
    },
  };
}

/**
 * A blob's bytes in this script's own memory. In Firefox the ArrayBuffer a page's File gives a
 * content script belongs to the page's compartment: a view of it cannot even be sliced
 * ("Permission denied to access property constructor"), so the bytes are copied into ours.
 * @param {Blob} blob
 * @returns {Promise<Uint8Array>}
 */
export async function readOwnBytes(blob) {
  const buffer = await blob.arrayBuffer();
  const bytes = new Uint8Array(buffer.byteLength);
  bytes.set(new Uint8Array(buffer));
  return bytes;
}

/**
 * A queue entry for a file: a photo LowKey protects (`protectable`), an image it cannot protect
 * (`unsupported`: its format's name; the user chooses), or anything else (passes as it is).
 * @param {File} file
 * @returns {Promise<{file: File, protectable: boolean, unsupported?: string}>}
 */
export async function classify(file) {
  let head;
  try {
    head = await readOwnBytes(file.slice(0, SNIFF_BYTES));
  } catch {
    // Unreadable: an image is the user's choice; anything else goes as it would have.
    const format = unprotectableFormat(new Uint8Array(), file);
    return format ? { file, protectable: false, unsupported: format } : { file, protectable: false };
  }
  if (sniffImage(head) !== null) return { file, protectable: true };
  const format = unprotectableFormat(head, file);
  return format ? { file, protectable: false, unsupported: format } : { file, protectable: false };
}

async function protectFile(link, item, { signal, onProgress }, outputs, checks) {
  const { file } = item;
  if (file.size > MAX_PHOTO_BYTES) {
    throw new LowKeyError('too-large', `the photo is ${Math.round(file.size / 1048576)} MB; LowKey takes up to 47 MB`);
  }
  const bytes = await readOwnBytes(file);
  const mime = sniffImage(bytes.subarray(0, SNIFF_BYTES)) ?? file.type;
  const reply = await link.protect({ name: file.name || 'photo', mime, data: encodeBase64(bytes) }, { signal, onProgress });
  if (reply.skip) throw new LowKeyError('skipped'); // paused meanwhile: the original, as when paused
  // The page sees the same name, type (exactly as the browser gave it, even empty) and date.
  const output = new File([decodeBase64(reply.data)], file.name, {
    type: file.type, lastModified: file.lastModified,
  });
  outputs.add(output);
  if (reply.recognition) checks.set(output, reply.recognition);
  return output;
}
