// Shared by the smoke tests: the local upload page (with a strict CSP), the fake native host's
// launcher, photos, checks.
import { chmodSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
export const TRAILER = 'LOWKEY-FAKE-PROTECTED';

const PAGE = `<!doctype html><meta charset="utf-8"><title>upload</title>
<input type="file" id="file" multiple><div id="zone" style="width:200px;height:100px;background:#eee">drop</div>
<textarea id="paste"></textarea>
<script nonce="lowkey">
window.received = [];
async function record(how, files) {
  for (const f of files) {
    const bytes = new Uint8Array(await f.arrayBuffer());
    window.received.push({ how, name: f.name, type: f.type, size: f.size, tail: new TextDecoder().decode(bytes.slice(-21)) });
  }
}
document.getElementById('file').addEventListener('change', (e) => record('input', e.target.files));
const zone = document.getElementById('zone');
zone.addEventListener('dragover', (e) => e.preventDefault());
zone.addEventListener('drop', (e) => { e.preventDefault(); record('drop', e.dataTransfer.files); });
document.getElementById('paste').addEventListener('paste', (e) => { e.preventDefault(); record('paste', e.clipboardData.files); });
</script>`;

// A strict CSP, as the big sites have: the content script's modules must load all the same.
const CSP = "default-src 'none'; script-src 'nonce-lowkey'; style-src 'unsafe-inline'";

/** Serve the upload page on 127.0.0.1; resolves with {server, url}. */
export async function startServer() {
  const server = createServer((req, res) => {
    res.setHeader('content-type', 'text/html');
    res.setHeader('content-security-policy', CSP);
    res.end(PAGE);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${server.address().port}/` };
}

/** An executable that starts scripts/fake-native-host.mjs (a native host's "path"). */
export function writeFakeHost(dir) {
  const wrapper = join(dir, 'host.sh');
  writeFileSync(wrapper, `#!/bin/sh\nexec "${process.execPath}" "${join(HERE, 'fake-native-host.mjs')}" "$@"\n`);
  chmodSync(wrapper, 0o755);
  return wrapper;
}

/** Bytes that start like a JPEG (the fake host does not decode them). */
export const jpeg = (seed) => Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.from(`fake jpeg ${seed} `.repeat(50))]);

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Poll `fn` until it returns something truthy. */
export async function until(what, fn, ms = 10000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const value = await fn();
    if (value) return value;
    await sleep(100);
  }
  throw new Error(`timed out: ${what}`);
}

/** Record and print one check. */
export function checker() {
  const results = [];
  const check = (name, ok, detail = '') => {
    results.push({ name, ok: Boolean(ok) });
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}${detail ? `: ${detail}` : ''}`);
  };
  return { check, passed: () => results.length > 0 && results.every((r) => r.ok) };
}
