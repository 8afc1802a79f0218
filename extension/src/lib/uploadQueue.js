/**
 * The page's upload queue: photos wait here while they are protected, one at a time, in the
 * order they were chosen; the page gets a batch (what one file input, drop or paste carried)
 * only once every photo in it is settled.
 *
 * Item states:
 * - `queued` → `protecting` → `protected` (the page gets the protected file);
 * - `no-face` (the page gets the original, and the user is told), `passthrough` (not a photo,
 *   or protection was paused meanwhile: the original, untouched);
 * - `failed` (protection failed, timed out, the daemon is away, or an image LowKey cannot
 *   protect, which is failed from the start and cannot be retried): the batch waits for the user:
 *   {@link UploadQueue#retry}, {@link UploadQueue#useOriginal} (this once) or
 *   {@link UploadQueue#cancel};
 * - `original` (the user chose to upload the original), `cancelled` (the page never gets it).
 */

import { toLowKeyError } from './messages.js';

/** States after which an item never changes. */
export const SETTLED = Object.freeze(['protected', 'no-face', 'passthrough', 'original', 'cancelled']);

/**
 * @typedef {object} QueueItem
 * @property {number} id
 * @property {number} batch the batch's id
 * @property {File|object} file the original
 * @property {boolean} protectable whether it goes to protection (a photo)
 * @property {string} state
 * @property {number} percent
 * @property {string|null} phase
 * @property {{code: string, message: string}|null} error
 * @property {File|object|null} output what the page gets (null: nothing)
 */

/** Protects queued photos one at a time through an injected `protect` function. */
export class UploadQueue {
  /**
   * @param {object} options
   * @param {(item: QueueItem, ctx: {signal: AbortSignal, onProgress: (p: {phase: string, percent: number}) => void}) => Promise<File|object>} options.protect
   *   resolves with the protected file; rejects with an error whose `code` is the reason
   *   (`no-face` passes the original; `cancelled` after an abort cancels)
   * @param {(item: QueueItem) => void} [options.onChange] called after every change of an item
   * @param {number} [options.concurrency] photos protected at once (default 1)
   */
  constructor({ protect, onChange, concurrency = 1 }) {
    this._protect = protect;
    this._onChange = onChange ?? (() => {});
    this.concurrency = concurrency;
    this._items = new Map();
    this._batches = new Map();
    this._running = new Map(); // item id -> AbortController
    this._nextItem = 1;
    this._nextBatch = 1;
  }

  /**
   * Queue one batch.
   * @param {{file: File|object, protectable: boolean, unsupported?: string}[]} entries in the
   *   page's order; `unsupported`: the name of an image format LowKey cannot protect (the item
   *   starts `failed`: never passed silently, the user chooses)
   * @returns {{id: number, items: QueueItem[], done: Promise<{files: Array<File|object>, items: QueueItem[]}>}}
   *   `done` resolves when every item is settled, with the files the page gets, in order
   */
  addBatch(entries) {
    const id = this._nextBatch++;
    const items = entries.map(({ file, protectable, unsupported }) => {
      const item = {
        id: this._nextItem++, batch: id, file, protectable: Boolean(protectable),
        state: protectable ? 'queued' : 'passthrough', percent: 0, phase: null, error: null,
        output: protectable ? null : file,
      };
      if (!protectable && unsupported) {
        Object.assign(item, { state: 'failed', output: null, error: unsupportedError(unsupported) });
      }
      return item;
    });
    let resolve;
    const done = new Promise((r) => { resolve = r; });
    this._batches.set(id, { id, items, resolve });
    for (const item of items) {
      this._items.set(item.id, item);
      this._onChange(item);
    }
    this._checkBatch(id);
    this._pump();
    return { id, items, done };
  }

  /** A snapshot of every item not yet handed to the page, in order. */
  items() {
    return [...this._items.values()].map((item) => ({ ...item }));
  }

  /**
   * One item (a snapshot), or undefined.
   * @param {number} id
   */
  get(id) {
    const item = this._items.get(id);
    return item && { ...item };
  }

  /**
   * Cancel an item: the page never gets it. Aborts it when it is being protected.
   * @param {number} id
   * @returns {boolean} whether something was cancelled
   */
  cancel(id) {
    const item = this._items.get(id);
    if (!item || SETTLED.includes(item.state)) return false;
    this._running.get(id)?.abort();
    this._running.delete(id);
    this._set(item, { state: 'cancelled', output: null });
    this._pump();
    return true;
  }

  /**
   * Cancel every unsettled item of a batch.
   * @param {number} batchId
   */
  cancelBatch(batchId) {
    for (const item of this._batches.get(batchId)?.items ?? []) this.cancel(item.id);
  }

  /** Cancel everything (the page is going away). */
  cancelAll() {
    for (const id of [...this._items.keys()]) this.cancel(id);
  }

  /**
   * Try a failed item again (it goes back in the queue in its original order).
   * @param {number} id
   * @returns {boolean}
   */
  retry(id) {
    const item = this._items.get(id);
    if (!item || item.state !== 'failed' || !item.protectable) return false;
    this._set(item, { state: 'queued', error: null, percent: 0, phase: null });
    this._pump();
    return true;
  }

  /**
   * Let a failed item through as it is, this one time.
   * @param {number} id
   * @returns {boolean}
   */
  useOriginal(id) {
    const item = this._items.get(id);
    if (!item || item.state !== 'failed') return false;
    this._set(item, { state: 'original', output: item.file });
    return true;
  }

  // -- internals ---------------------------------------------------------------------------

  _set(item, changes) {
    Object.assign(item, changes);
    this._onChange({ ...item });
    if (SETTLED.includes(item.state)) this._checkBatch(item.batch);
  }

  _checkBatch(batchId) {
    const batch = this._batches.get(batchId);
    if (!batch || !batch.items.every((item) => SETTLED.includes(item.state))) return;
    this._batches.delete(batchId);
    for (const item of batch.items) this._items.delete(item.id);
    const files = batch.items.filter((item) => item.output).map((item) => item.output);
    batch.resolve({ files, items: batch.items.map((item) => ({ ...item })) });
  }

  _pump() {
    while (this._running.size < this.concurrency) {
      const next = [...this._items.values()].find((item) => item.state === 'queued');
      if (!next) return;
      this._start(next);
    }
  }

  _start(item) {
    const controller = new AbortController();
    this._running.set(item.id, controller);
    this._set(item, { state: 'protecting', percent: 0, phase: 'queued' });
    const onProgress = ({ phase, percent }) => {
      if (controller.signal.aborted || item.state !== 'protecting') return;
      this._set(item, { phase: phase ?? item.phase, percent: Number(percent) || 0 });
    };
    let run;
    try {
      run = Promise.resolve(this._protect({ ...item }, { signal: controller.signal, onProgress }));
    } catch (err) {
      run = Promise.reject(err);
    }
    run.then(
      (output) => {
        if (controller.signal.aborted || item.state !== 'protecting') return;
        this._set(item, { state: 'protected', output, percent: 100, phase: 'done' });
      },
      (err) => {
        if (controller.signal.aborted || item.state !== 'protecting') return;
        // What the user sees: a LowKey error's words, never a raw exception's text.
        const { code, message } = toLowKeyError(err);
        if (code === 'extension') console.error('LowKey:', err);
        if (code === 'no-face') {
          this._set(item, { state: 'no-face', output: item.file, error: { code, message } });
        } else if (code === 'skipped') {
          this._set(item, { state: 'passthrough', output: item.file });
        } else if (code === 'cancelled') {
          this._set(item, { state: 'cancelled', output: null, error: { code, message } });
        } else {
          this._set(item, { state: 'failed', error: { code, message } });
        }
      },
    ).finally(() => {
      if (this._running.get(item.id) === controller) this._running.delete(item.id);
      this._pump();
    });
  }
}

/**
 * The failure of an image LowKey cannot protect.
 * @param {string} format e.g. 'AVIF'
 * @returns {{code: string, message: string}}
 */
export function unsupportedError(format) {
  return {
    code: 'unsupported-format',
    message: `LowKey cannot protect this format (${format}): upload it as it is, or cancel`,
  };
}
