import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { inflateRawSync, inflateSync } from 'node:zlib';
import { buildManifest, schemaDrift } from '../scripts/build.mjs';
import { crc32 } from '../scripts/crc32.mjs';
import { drawIcon, encodePng } from '../scripts/png.mjs';
import { zipDirectory } from '../scripts/zip.mjs';
import { DEFAULT_SITES, matchPatterns } from '../src/lib/siteList.js';

const read = (path) => JSON.parse(readFileSync(new URL(path, import.meta.url), 'utf8'));
const ids = read('../../native_host/extension_ids.json');
const template = read('../src/manifest.template.json');
const values = { version: '1.2.3', ids };

test('the Chromium manifest: pinned key, module service worker', () => {
  const m = buildManifest(template, 'chromium', values);
  assert.equal(m.manifest_version, 3);
  assert.equal(m.version, '1.2.3');
  assert.equal(m.key, ids.chromium.key);
  assert.deepEqual(m.background, { service_worker: 'background.js', type: 'module' });
  assert.equal(m.browser_specific_settings, undefined);
  // the key gives the id (first 32 hex digits of sha256(DER), 0-f mapped to a-p)
  const hex = createHash('sha256').update(Buffer.from(m.key, 'base64')).digest('hex').slice(0, 32);
  assert.equal([...hex].map((c) => String.fromCharCode(97 + parseInt(c, 16))).join(''), ids.chromium.id);
});

test('the Firefox manifest: background scripts, gecko id', () => {
  const m = buildManifest(template, 'firefox', values);
  assert.deepEqual(m.background, { scripts: ['background.js'], type: 'module' });
  assert.equal(m.browser_specific_settings.gecko.id, ids.firefox.id);
  assert.match(m.browser_specific_settings.gecko.strict_min_version, /^\d+\.0$/);
  assert.equal(m.key, undefined);
});

test('both: permissions, the content scripts in the manifest, nothing web-accessible', () => {
  for (const browser of ['chromium', 'firefox']) {
    const m = buildManifest(template, browser, values);
    for (const p of ['nativeMessaging', 'storage', 'scripting']) assert.ok(m.permissions.includes(p), p);
    // content.js judges every frame by its page: it runs everywhere, so LowKey needs every host.
    assert.deepEqual(m.host_permissions, ['*://*/*']);
    assert.equal(m.optional_host_permissions, undefined);
    // Declared, not registered at install: there from the browser's first page (issue 22).
    const [content, mainWorld, ...more] = m.content_scripts;
    assert.deepEqual(more, []);
    assert.deepEqual(content, {
      matches: ['*://*/*'], js: ['content.js'], run_at: 'document_start', all_frames: true,
      match_origin_as_fallback: true,
    });
    assert.deepEqual(mainWorld, {
      matches: matchPatterns([...DEFAULT_SITES]), js: ['content/main-world.js'], world: 'MAIN',
      run_at: 'document_start', all_frames: true, match_origin_as_fallback: true,
    });
    // No page may fetch a file of LowKey's (a fingerprint under a fixed id).
    assert.equal(m.web_accessible_resources, undefined);
    assert.equal(m.action.default_popup, undefined, 'one click on the button toggles: no default popup');
    const text = JSON.stringify(m);
    assert.doesNotMatch(text, /"\$|_comment/);
  }
  const extra = buildManifest(template, 'chromium', { ...values, extraHosts: ['127.0.0.1'] });
  assert.ok(extra.content_scripts[1].matches.includes('*://127.0.0.1/*'));
});

test('the schema and lib/messages.js agree', () => {
  assert.deepEqual(schemaDrift(read('../../native_host/messages.schema.json')), []);
  const broken = structuredClone(read('../../native_host/messages.schema.json'));
  broken.$defs.message_error.properties.code.enum.push('new-code');
  assert.deepEqual(schemaDrift(broken), ['error codes']);
});

test('icons are valid PNGs', () => {
  const png = encodePng(drawIcon('error', 16), 16, 16);
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  let offset = 8;
  const chunks = [];
  while (offset < png.length) {
    const length = png.readUInt32BE(offset);
    const type = png.subarray(offset + 4, offset + 8).toString('ascii');
    const body = png.subarray(offset + 4, offset + 8 + length);
    assert.equal(png.readUInt32BE(offset + 8 + length), crc32(body), type);
    chunks.push([type, png.subarray(offset + 8, offset + 8 + length)]);
    offset += 12 + length;
  }
  assert.deepEqual(chunks.map(([t]) => t), ['IHDR', 'IDAT', 'IEND']);
  assert.equal(inflateSync(chunks[1][1]).length, (16 * 4 + 1) * 16);
});

test('zip round trip', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lowkey-zip-'));
  try {
    mkdirSync(join(dir, 'in', 'sub'), { recursive: true });
    writeFileSync(join(dir, 'in', 'a.txt'), 'hello hello hello hello');
    writeFileSync(join(dir, 'in', 'sub', 'b.bin'), Buffer.from([1, 2, 3]));
    const names = zipDirectory(join(dir, 'in'), join(dir, 'out.zip'));
    assert.deepEqual(names, ['a.txt', 'sub/b.bin']);
    const zip = readFileSync(join(dir, 'out.zip'));
    const end = zip.length - 22;
    assert.equal(zip.readUInt32LE(end), 0x06054b50);
    let at = zip.readUInt32LE(end + 16);
    const files = {};
    for (let i = 0; i < zip.readUInt16LE(end + 10); i += 1) {
      const method = zip.readUInt16LE(at + 10);
      const size = zip.readUInt32LE(at + 20);
      const nameLength = zip.readUInt16LE(at + 28);
      const name = zip.subarray(at + 46, at + 46 + nameLength).toString();
      const local = zip.readUInt32LE(at + 42);
      const start = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
      const body = zip.subarray(start, start + size);
      files[name] = method === 8 ? inflateRawSync(body) : body;
      assert.equal(crc32(files[name]), zip.readUInt32LE(at + 16));
      at += 46 + nameLength;
    }
    assert.equal(files['a.txt'].toString(), 'hello hello hello hello');
    assert.deepEqual([...files['sub/b.bin']], [1, 2, 3]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('no Firefox for Android (it has no native messaging); Chromium new enough for the scripts', () => {
  const firefox = buildManifest(template, 'firefox', values);
  assert.equal(firefox.browser_specific_settings.gecko_android, undefined);
  assert.ok(Number(firefox.browser_specific_settings.gecko.strict_min_version.split('.')[0]) >= 128);
  // scripting.registerContentScripts with matchOriginAsFallback: Chromium 119+
  assert.ok(Number(buildManifest(template, 'chromium', values).minimum_chrome_version) >= 119);
});
