// scripts/bundle.mjs: the content script and its modules as one classic script, and the built
// content.js run in a fake frame.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import vm from 'node:vm';
import { build } from '../scripts/build.mjs';
import { BundleError, bundle, parseModule } from '../scripts/bundle.mjs';

const files = (map) => ({ read: (path) => {
  const key = path.replace(/^\/src\//, '');
  if (!(key in map)) throw new Error('ENOENT');
  return map[key];
} });

test('modules keep their own scope; imports, renames and exports resolve', () => {
  const { code, modules } = bundle('/src', 'main.js', files({
    'main.js': "import { twice, NAME as label } from './lib/a.js';\nimport {\n  helper,\n} from './b.js';\nglobalThis.out = [twice(21), label, helper()];\n",
    'lib/a.js': "import { helper } from '../b.js';\nfunction read() { return 'a'; }\nexport const NAME = read() + helper();\nexport function twice(n) { return n * 2; }\n",
    'b.js': "function read() { return 'b'; }\nexport { read as helper };\nexport class Unused {}\nexport async function later() {}\n",
  }));
  assert.deepEqual(modules, ['b.js', 'lib/a.js', 'main.js']);
  assert.doesNotMatch(code, /^\s*(import|export)\b/m);
  const context = vm.createContext({});
  vm.runInContext(code, context);
  assert.deepEqual([...context.out], [42, 'ab', 'b']);
});

test('what it does not understand fails the build, naming the file', () => {
  const one = (source) => () => bundle('/src', 'main.js', files({ 'main.js': source, 'x.js': 'export const x = 1;\n' }));
  for (const [source, what] of [
    ["import x from './x.js';\n", /does not read/],
    ["import * as x from './x.js';\n", /does not read/],
    ["import './x.js';\n", /does not read/],
    ['export default 1;\n', /does not read/],
    ['export let y = 1;\n', /does not read/],
    ["export * from './x.js';\n", /does not read/],
    ["const m = import('./x.js');\n", /dynamic import/],
    ['const u = import.meta.url;\n', /import\.meta/],
    ["import { y } from './x.js';\n", /imports y, which x\.js does not export/],
    ["import { x } from 'node:fs';\n", /only relative imports/],
    ["import { x } from './missing.js';\n", /missing\.js, which cannot be read/],
  ]) assert.throws(one(source), (err) => err instanceof BundleError && what.test(err.message) && /main\.js|x\.js/.test(err.message), source);
  assert.throws(() => bundle('/src', 'a.js', files({
    'a.js': "import { b } from './b.js';\nexport const a = 1;\n", 'b.js': "import { a } from './a.js';\nexport const b = 2;\n",
  })), /import cycle: a\.js -> b\.js -> a\.js/);
  assert.deepEqual(parseModule("export function f() {}\nexport { f as g };\n", 'm.js').exports, [['f', 'g'], ['f', 'f']]);
});

test('the built content.js is one classic script that starts in a frame', () => {
  const out = mkdtempSync(join(tmpdir(), 'lowkey-bundle-'));
  try {
    build({ outDir: out });
    const code = readFileSync(join(out, 'chromium', 'content.js'), 'utf8');
    assert.doesNotMatch(code, /^\s*(import|export)\b/m);
    assert.doesNotMatch(code, /getURL|import\(/, 'it loads nothing from the extension');
    const listeners = {};
    const sent = [];
    const window = {
      location: { origin: 'https://www.facebook.com', href: 'https://www.facebook.com/' },
      addEventListener: (type, fn, capture) => { listeners[type] = capture; },
      HTMLInputElement: class {},
    };
    window.parent = window;
    const chrome = {
      runtime: { id: 'lowkey', sendMessage: async (m) => sent.push(m) },
      storage: { local: { get: async () => ({}) }, onChanged: { addListener() {} } },
    };
    const context = vm.createContext({ window, chrome, console });
    vm.runInContext(code, context);
    assert.deepEqual(listeners, { input: true, change: true, drop: true, paste: true });
    assert.equal(typeof context.__lowkeyContent?.alive, 'function');
    vm.runInContext(code, context); // injected again (install): nothing more
    assert.deepEqual(sent, [], 'a page does not ask the background about itself');
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
