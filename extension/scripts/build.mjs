// Builds the extension for Chromium and Firefox from src/:
//   dist/chromium/, dist/firefox/          unpacked (load these in the browsers)
//   dist/lowkey-chromium.zip, dist/lowkey-firefox.xpi
// One manifest template (src/manifest.template.json) gives both manifests; the ids come from
// native_host/extension_ids.json, the message schema from native_host/messages.schema.json
// (copied in; the build fails when lib/messages.js disagrees with it). The content script is
// bundled into one classic script (scripts/bundle.mjs): nothing of the extension is
// web-accessible, so no page can tell LowKey is installed by fetching its files.
//
//   node scripts/build.mjs [--extra-host HOST]... [--out DIR]
// --extra-host adds a site to the default list and its host permission (a test build: e.g.
// 127.0.0.1 for the end-to-end tests' local pages). A release build has none. --out builds
// into DIR instead of dist/ (the tests do, so a test build never lands in dist/).
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { HOST_ERROR_CODES, PHASES, REQUEST_TYPES } from '../src/lib/messages.js';
import { DEFAULT_SITES, matchPatterns, normaliseSite } from '../src/lib/siteList.js';
import { ICON_SIZES, TOOLBAR_STATES } from '../src/lib/toolbarState.js';
import { bundle } from './bundle.mjs';
import { drawIcon, encodePng } from './png.mjs';
import { zipDirectory } from './zip.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const REPO = join(ROOT, '..');
const SRC = join(ROOT, 'src');
const DIST = join(ROOT, 'dist');
export const BROWSERS = ['chromium', 'firefox'];
const PACKAGES = { chromium: 'lowkey-chromium.zip', firefox: 'lowkey-firefox.xpi' };
/** The content script's entry (bundled) and the one file of content/ a package keeps. */
export const CONTENT_ENTRY = 'content.js';
const MAIN_WORLD = 'main-world.js';

const readJson = (path) => JSON.parse(readFileSync(path, 'utf8'));

/**
 * Differences between lib/messages.js and the host's schema (empty when they agree).
 * @param {object} schema messages.schema.json
 * @returns {string[]}
 */
export function schemaDrift(schema) {
  const defs = schema.$defs;
  const same = (a, b) => JSON.stringify([...a].sort()) === JSON.stringify([...b].sort());
  const problems = [];
  if (!same(HOST_ERROR_CODES, defs.message_error.properties.code.enum)) problems.push('error codes');
  if (!same(PHASES, defs.message_progress.properties.phase.enum)) problems.push('progress phases');
  const types = defs.request.oneOf.map((ref) => defs[ref.$ref.split('/').pop()].properties.type.const);
  if (!same(REQUEST_TYPES, types)) problems.push('request types');
  return problems;
}

/**
 * The manifest for one browser.
 * @param {object} template manifest.template.json
 * @param {'chromium'|'firefox'} browser
 * @param {{version: string, ids: object, extraHosts?: string[]}} values
 * @returns {object}
 */
export function buildManifest(template, browser, { version, ids, extraHosts = [] }) {
  const manifest = {};
  for (const [key, value] of Object.entries(template)) {
    if (key === '_comment' || key.startsWith('$')) continue;
    manifest[key] = value;
  }
  Object.assign(manifest, template[`$${browser}`]);
  const fill = (value) => {
    if (value === '$version') return version;
    if (value === '$sitePatterns') return matchPatterns([...DEFAULT_SITES, ...extraHosts]);
    if (value === '$chromiumKey') return ids.chromium.key;
    if (value === '$firefoxId') return ids.firefox.id;
    if (Array.isArray(value)) return value.map(fill);
    if (value && typeof value === 'object') {
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fill(v)]));
    }
    if (typeof value === 'string' && value.startsWith('$')) throw new Error(`unknown template value ${value}`);
    return value;
  };
  return fill(manifest);
}

/**
 * Build both browsers' folders and packages.
 * @param {{extraHosts?: string[], outDir?: string}} [options] outDir: default dist/
 * @returns {{folders: Object<string, string>, packages: Object<string, string>}}
 */
export function build({ extraHosts = [], outDir = DIST } = {}) {
  const ids = readJson(join(REPO, 'native_host', 'extension_ids.json'));
  const schemaText = readFileSync(join(REPO, 'native_host', 'messages.schema.json'), 'utf8');
  const drift = schemaDrift(JSON.parse(schemaText));
  if (drift.length) throw new Error(`src/lib/messages.js disagrees with the schema: ${drift.join(', ')}`);
  const { version } = readJson(join(ROOT, 'package.json'));
  const template = readJson(join(SRC, 'manifest.template.json'));
  const hosts = extraHosts.map((host) => {
    const site = normaliseSite(host);
    if (!site) throw new Error(`--extra-host ${host} is not a host`);
    return site;
  });
  mkdirSync(outDir, { recursive: true });
  const folders = {};
  const packages = {};
  for (const browser of BROWSERS) {
    const out = join(outDir, browser);
    rmSync(out, { recursive: true, force: true });
    cpSync(SRC, out, { recursive: true, filter: (path) => !path.endsWith('manifest.template.json') });
    const manifest = buildManifest(template, browser, { version, ids, extraHosts: hosts });
    writeFileSync(join(out, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    writeFileSync(join(out, 'config.js'), [
      '// Written by scripts/build.mjs from native_host/extension_ids.json: do not edit.',
      `export const NATIVE_HOST_NAME = ${JSON.stringify(ids.native_host_name)};`,
      `export const BROWSER = ${JSON.stringify(browser)};`,
      '// Sites a test build (--extra-host) adds to the default list and the host permissions.',
      `export const EXTRA_SITES = ${JSON.stringify(hosts)};`,
      '',
    ].join('\n'));
    writeFileSync(join(out, 'messages.schema.json'), schemaText);
    // The content script and its modules as one classic script; the modules themselves go (the
    // background and the pages use lib/ and shared/, never content/).
    const { code } = bundle(out, CONTENT_ENTRY);
    writeFileSync(join(out, CONTENT_ENTRY), code);
    for (const name of readdirSync(join(out, 'content'))) {
      if (name !== MAIN_WORLD) rmSync(join(out, 'content', name), { recursive: true });
    }
    mkdirSync(join(out, 'icons'), { recursive: true });
    for (const state of TOOLBAR_STATES) {
      for (const size of ICON_SIZES) {
        writeFileSync(join(out, 'icons', `${state}-${size}.png`), encodePng(drawIcon(state, size), size, size));
      }
    }
    const pkg = join(outDir, PACKAGES[browser]);
    rmSync(pkg, { force: true });
    zipDirectory(out, pkg);
    folders[browser] = out;
    packages[browser] = pkg;
  }
  return { folders, packages };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: {
    'extra-host': { type: 'string', multiple: true, default: [] }, out: { type: 'string' } } });
  const { folders, packages } = build({ extraHosts: values['extra-host'], outDir: values.out });
  for (const browser of BROWSERS) console.log(`${browser}: ${folders[browser]} ${packages[browser]}`);
}
