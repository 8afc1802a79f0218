/**
 * Reassembling a protected file from the host's `chunk` messages, then checking it against the
 * `result` message (count, size, sha256) before anyone may use it.
 *
 * Chunks must arrive in order (index 0, 1, ... count-1) with the same `count`; a duplicate, a
 * gap, an index out of range, a changed count or data that is not base64 is an error at once.
 * Once failed, an assembler stays failed: it never yields a file.
 */
import { decodeBase64, sha256Hex } from './base64.js';
import { LowKeyError } from './messages.js';

/** The most bytes one result may hold (the daemon takes photos up to 50 MB). */
export const MAX_RESULT_BYTES = 64 * 1024 * 1024;

/** Collects one request's chunks. */
export class ChunkAssembler {
  /** @param {{maxBytes?: number}} [options] */
  constructor({ maxBytes = MAX_RESULT_BYTES } = {}) {
    this.maxBytes = maxBytes;
    this.parts = [];
    this.count = null;
    this.bytes = 0;
    this.failed = null;
  }

  /** How many chunks arrived so far. */
  get received() {
    return this.parts.length;
  }

  _fail(message) {
    this.failed = new LowKeyError('integrity', `the protected photo arrived damaged: ${message}`);
    this.parts = [];
    throw this.failed;
  }

  /**
   * Take the next chunk message.
   * @param {{index: number, count: number, data: string}} chunk
   * @throws {LowKeyError} code `integrity`
   */
  add(chunk) {
    if (this.failed) throw this.failed;
    const { index, count, data } = chunk ?? {};
    if (!Number.isInteger(count) || count < 1) this._fail(`bad chunk count ${count}`);
    if (!Number.isInteger(index) || index < 0) this._fail(`bad chunk index ${index}`);
    if (this.count === null) this.count = count;
    else if (count !== this.count) this._fail(`chunk count changed from ${this.count} to ${count}`);
    if (index >= count) this._fail(`chunk ${index} of ${count} is out of range`);
    if (index < this.received) this._fail(`chunk ${index} arrived twice`);
    if (index > this.received) this._fail(`chunk ${this.received} is missing (got ${index})`);
    let part;
    try {
      part = decodeBase64(data);
    } catch {
      this._fail(`chunk ${index} is not base64`);
    }
    if (this.bytes + part.length > this.maxBytes) this._fail(`over ${this.maxBytes} bytes`);
    this.parts.push(part);
    this.bytes += part.length;
  }

  /**
   * Check the whole file against the `result` message and return it.
   * @param {{size: number, sha256: string, chunks: number}} result
   * @returns {Promise<Uint8Array>} the file, only when every check passed
   * @throws {LowKeyError} code `integrity`
   */
  async finish(result) {
    if (this.failed) throw this.failed;
    const { size, sha256, chunks } = result ?? {};
    if (this.count === null) this._fail('no chunk arrived');
    if (chunks !== this.count) this._fail(`the result names ${chunks} chunks, the chunks ${this.count}`);
    if (this.received !== this.count) this._fail(`${this.received} of ${this.count} chunks arrived`);
    if (size !== this.bytes) this._fail(`${this.bytes} bytes arrived, the result names ${size}`);
    const file = new Uint8Array(this.bytes);
    let offset = 0;
    for (const part of this.parts) {
      file.set(part, offset);
      offset += part.length;
    }
    this.parts = [];
    const actual = await sha256Hex(file);
    if (typeof sha256 !== 'string' || actual !== sha256.toLowerCase()) {
      this._fail(`sha256 ${actual} differs from the result's ${sha256}`);
    }
    return file;
  }
}
