// Test doubles shared by the unit tests.
import { createHash } from 'node:crypto';

/** A fake native port (the shape of runtime.connectNative()'s), recording what was posted. */
export class FakePort {
  constructor() {
    this.posted = [];
    this.disconnected = false;
    this.error = undefined;
    this._onMessage = [];
    this._onDisconnect = [];
    this.onMessage = { addListener: (fn) => this._onMessage.push(fn) };
    this.onDisconnect = { addListener: (fn) => this._onDisconnect.push(fn) };
  }

  postMessage(message) {
    if (this.disconnected) throw new Error('Attempting to use a disconnected port object');
    this.posted.push(structuredClone(message));
  }

  disconnect() {
    this.disconnected = true;
  }

  /** The host sends a message. */
  deliver(message) {
    for (const fn of this._onMessage) fn(message, this);
  }

  /** The host goes away (with the browser's reason). */
  drop(reason) {
    this.disconnected = true;
    this.error = reason ? { message: reason } : undefined;
    for (const fn of this._onDisconnect) fn(this);
  }
}

/** connect() handing out FakePorts; `ports` holds every one made. */
export function fakeConnect() {
  const ports = [];
  const connect = () => {
    const port = new FakePort();
    ports.push(port);
    return port;
  };
  return { connect, ports };
}

/** The messages a host sends for a protected file of `bytes`, `size` bytes per chunk. */
export function hostFileMessages(id, bytes, size = 4, extra = {}) {
  const buf = Buffer.from(bytes);
  const count = Math.max(1, Math.ceil(buf.length / size));
  const chunks = [];
  for (let index = 0; index < count; index += 1) {
    chunks.push({
      id, type: 'chunk', index, count,
      data: buf.subarray(index * size, (index + 1) * size).toString('base64'),
    });
  }
  const result = {
    id, type: 'result', name: 'a.jpg', mime: 'image/jpeg', size: buf.length,
    sha256: createHash('sha256').update(buf).digest('hex'), chunks: count, measured: true,
    report: { status: 'protected', faces: [] }, ...extra,
  };
  return { chunks, result };
}

/** Let pending promise callbacks run. */
export const flush = () => new Promise((resolve) => setImmediate(resolve));

/**
 * Import a module of src/ that needs the built config.js (the background's and the content
 * controller's modules): src/ is copied once into a temporary folder with a test config.js.
 * @param {string} path relative to src/, e.g. 'content/controller.js'
 */
export async function importBuilt(path) {
  const { cpSync, mkdtempSync, writeFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { fileURLToPath, pathToFileURL } = await import('node:url');
  if (!importBuilt.root) {
    const root = mkdtempSync(join(tmpdir(), 'lowkey-src-'));
    cpSync(fileURLToPath(new URL('../src/', import.meta.url)), root, { recursive: true });
    writeFileSync(join(root, 'config.js'), [
      "export const NATIVE_HOST_NAME = 'test.lowkey';",
      "export const BROWSER = 'chromium';",
      "export const EXTRA_SITES = ['example.com'];", '',
    ].join('\n'));
    importBuilt.root = root;
  }
  return import(pathToFileURL(join(importBuilt.root, path)).href);
}

/** A promise with its resolve and reject outside. */
export function deferred() {
  let resolve;
  let reject;
  const promise = new Promise((a, b) => { resolve = a; reject = b; });
  return { promise, resolve, reject };
}
