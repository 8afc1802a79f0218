/**
 * The content script's controller (an ES module loaded by content.js): it keeps the page's
 * upload queue, reads the files, asks the background to protect the photos, shows the
 * indicator, and gives the page each batch once every photo in it is settled.
 */
import { decodeBase64, encodeBase64 } from '../lib/base64.js';
import { LowKeyError } from '../lib/messages.js';
import { SNIFF_BYTES, sniffImage } from '../lib/imageType.js';
import { findSite } from '../lib/siteList.js';
import { UploadQueue } from '../lib/uploadQueue.js';
import { LOCAL, sitesFrom } from '../shared/settings.js';
import { Indicator } from './indicator.js';
import { BackgroundLink } from './link.js';
import { deliverDrop, deliverPaste, deliverToInput } from './transfer.js';

/** The largest photo sent for protection (base64 must stay under the browsers' 64 MiB). */
export const MAX_PHOTO_BYTES = 47 * 1024 * 1024;

/**
 * Start the controller for this frame.
 * @param {{api: object, state: {enabled: boolean, paused: boolean}, ours: WeakSet<Event>,
 *   held: WeakMap<HTMLInputElement, boolean>, outputs: WeakSet<File>}} shared content.js's state
 * @returns {{fromInput: Function, fromDrop: Function, fromPaste: Function}}
 */
export function startController({ api, state, ours, held, outputs }) {
  const refresh = async () => {
    const stored = await api.storage.local.get([LOCAL.paused, LOCAL.sites]);
    state.paused = Boolean(stored[LOCAL.paused]);
    state.enabled = findSite(sitesFrom(stored), location.href) !== null;
  };
  refresh().catch(() => {});
  api.storage.onChanged.addListener((changes, area) => {
    if (area === 'local' && (LOCAL.paused in changes || LOCAL.sites in changes)) refresh().catch(() => {});
  });

  const link = new BackgroundLink(api);
  const inputBatches = new WeakMap(); // file input -> {batch} of its newest held choice
  const indicator = new Indicator(document, {
    onCancel: (id) => queue.cancel(id),
    onRetry: (id) => queue.retry(id),
    onOriginal: (id) => queue.useOriginal(id),
  });
  const queue = new UploadQueue({
    protect: (item, ctx) => protectFile(link, item, ctx, outputs),
    onChange: (item) => indicator.update(item),
  });
  addEventListener('pagehide', () => queue.cancelAll());

  /** Classify, queue, wait; then `deliver` the files (not called when nothing is left). */
  async function run(files, deliver) {
    const entries = await Promise.all(files.map(async (file) => ({ file, protectable: await isPhoto(file) })));
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

  return {
    /** A file input's new files, held back (content.js emptied the input). */
    async fromInput(input, files) {
      const token = {};
      const previous = inputBatches.get(input);
      inputBatches.set(input, token);
      if (previous?.batch !== undefined) queue.cancelBatch(previous.batch);
      const current = () => inputBatches.get(input) === token;
      const { id, done } = await run(files, (out) => {
        if (!current()) return; // replaced by a newer choice
        held.delete(input);
        deliverToInput(input, out, ours);
      });
      token.batch = id;
      if (!current()) queue.cancelBatch(id); // replaced while its files were read
      await done;
      if (current()) {
        inputBatches.delete(input);
        held.delete(input);
      }
    },
    /** Dropped files, held back. */
    async fromDrop(target, files, strings, init) {
      await (await run(files, (out) => deliverDrop(target, out, strings, init, ours))).done;
    },
    /** Pasted files, held back. */
    async fromPaste(target, files, strings) {
      await (await run(files, (out) => deliverPaste(target, out, strings, ours))).done;
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

async function isPhoto(file) {
  try {
    return sniffImage(await readOwnBytes(file.slice(0, SNIFF_BYTES))) !== null;
  } catch {
    return false; // unreadable: the page gets it as it is, as it would have
  }
}

async function protectFile(link, item, { signal, onProgress }, outputs) {
  const { file } = item;
  if (file.size > MAX_PHOTO_BYTES) {
    throw new LowKeyError('too-large', `the photo is ${Math.round(file.size / 1048576)} MB; LowKey takes up to 47 MB`);
  }
  const bytes = await readOwnBytes(file);
  const mime = sniffImage(bytes.subarray(0, SNIFF_BYTES)) ?? file.type;
  const reply = await link.protect({ name: file.name || 'photo', mime, data: encodeBase64(bytes) }, { signal, onProgress });
  if (reply.skip) throw new LowKeyError('skipped'); // paused meanwhile: the original, as when paused
  const output = new File([decodeBase64(reply.data)], file.name, {
    type: file.type || reply.mime, lastModified: file.lastModified,
  });
  outputs.add(output);
  return output;
}
