// One classic script from an ES module and everything it imports, for the content script:
// content scripts cannot be modules, and loading modules with import(runtime.getURL(...)) needs
// them in web_accessible_resources, where every page can fetch them under the extension's id
// (a fingerprint: issue 22). The bundle needs no file of the extension to be reachable.
//
// Only what src/ uses is understood, and anything else is refused (the build fails, naming the
// file and line), never passed through half-handled:
//   import { a, b as c } from './relative.js';       (one statement; it may span lines)
//   export function / async function / class / const NAME
//   export { a, b as c };
// Each module keeps its own scope (a function per module, in dependency order); an import is a
// const taken from its module's exports, which holds for the functions, classes and constants
// src/ exports (an `export let` would not stay live: refused).
import { readFileSync } from 'node:fs';
import { dirname, join, normalize, relative, sep } from 'node:path';

const IMPORT = /^import\s*\{([^}]*)\}\s*from\s*'([^']+)';?[ \t]*$/gm;
const EXPORT_DECL = /^export\s+((?:async\s+)?function\*?|class|const)\s+([A-Za-z_$][\w$]*)/gm;
const EXPORT_LIST = /^export\s*\{([^}]*)\};?[ \t]*$/gm;

class BundleError extends Error {}

function lineOf(source, index) {
  return source.slice(0, index).split('\n').length;
}

/** `a, b as c` -> [['a', 'a'], ['b', 'c']] (imported or local name, then the name it takes). */
function specifiers(text, where) {
  return text.split(',').map((part) => part.trim()).filter(Boolean).map((part) => {
    const match = /^([A-Za-z_$][\w$]*)(?:\s+as\s+([A-Za-z_$][\w$]*))?$/.exec(part);
    if (!match) throw new BundleError(`${where}: cannot read "${part}"`);
    return [match[1], match[2] ?? match[1]];
  });
}

/**
 * One module's parts: its imports, its exports and its code with both statements removed.
 * @param {string} source
 * @param {string} name the module's path (for messages)
 * @returns {{imports: {from: string, names: string[][]}[], exports: string[][], code: string}}
 */
export function parseModule(source, name) {
  const imports = [];
  const exports = [];
  let code = source.replace(IMPORT, (_, names, from, offset) => {
    imports.push({ from, names: specifiers(names, `${name}:${lineOf(source, offset)}`) });
    return '';
  });
  code = code.replace(EXPORT_LIST, (_, names) => {
    for (const [local, exported] of specifiers(names, name)) exports.push([local, exported]);
    return '';
  });
  code = code.replace(EXPORT_DECL, (statement, kind, local) => {
    exports.push([local, local]);
    return statement.replace(/^export\s+/, '');
  });
  const refused = [
    [/^\s*import\b(?!\s*\()/m, 'an import this bundler does not read'],
    [/^\s*export\b/m, 'an export this bundler does not read (default, let, *, from)'],
    [/\bimport\s*\(/, 'a dynamic import()'],
    [/\bimport\.meta\b/, 'import.meta'],
  ];
  for (const [pattern, what] of refused) {
    const match = pattern.exec(code);
    if (match) throw new BundleError(`${name}: ${what} near "${match[0].trim()}"`);
  }
  return { imports, exports, code };
}

/**
 * Bundle `entry` (a path under `root`) and its imports into one classic script.
 * @param {string} root the folder the module paths are under (src/, or a build's copy of it)
 * @param {string} entry e.g. 'content.js'
 * @param {{read?: (path: string) => string}} [options] read: a file's text (tests)
 * @returns {{code: string, modules: string[]}} the script and the modules in it, dependencies first
 */
export function bundle(root, entry, { read = (path) => readFileSync(path, 'utf8') } = {}) {
  const parsed = new Map();
  const order = [];
  const visiting = new Set();
  const visit = (path, chain) => {
    if (parsed.has(path)) return;
    if (visiting.has(path)) throw new BundleError(`an import cycle: ${[...chain, path].join(' -> ')}`);
    visiting.add(path);
    let source;
    try {
      source = read(join(root, path));
    } catch (err) {
      throw new BundleError(`${chain.at(-1) ?? 'entry'} imports ${path}, which cannot be read: ${err.message}`);
    }
    const module = parseModule(source, path);
    for (const item of module.imports) {
      if (!item.from.startsWith('.')) throw new BundleError(`${path}: only relative imports ("${item.from}")`);
      item.path = normalize(join(dirname(path), item.from)).split(sep).join('/');
      if (item.path.startsWith('..')) throw new BundleError(`${path}: ${item.from} is outside ${root}`);
      visit(item.path, [...chain, path]);
    }
    visiting.delete(path);
    parsed.set(path, module);
    order.push(path);
  };
  visit(normalize(entry).split(sep).join('/'), []);

  const names = new Map(order.map((path, i) => [path, `__lowkeyModule${i}`]));
  const parts = order.map((path) => {
    const { imports, exports, code } = parsed.get(path);
    const bindings = imports.map(({ path: from, names: list }) => {
      const provided = new Set(parsed.get(from).exports.map(([, exported]) => exported));
      for (const [imported] of list) {
        if (!provided.has(imported)) throw new BundleError(`${path} imports ${imported}, which ${from} does not export`);
      }
      const fields = list.map(([imported, local]) => (imported === local ? local : `${imported}: ${local}`));
      return `const { ${fields.join(', ')} } = ${names.get(from)};`;
    });
    const fields = exports.map(([local, exported]) => (local === exported ? local : `${exported}: ${local}`));
    return [
      `// ---- ${path}`,
      `const ${names.get(path)} = (() => {`,
      ...bindings,
      code.trim(),
      `return Object.freeze({ ${fields.join(', ')} });`,
      '})();',
    ].join('\n');
  });
  const code = [
    `// Built by scripts/bundle.mjs from ${relative(root, join(root, entry)).split(sep).join('/')} and the modules it imports: do not edit.`,
    '(() => {',
    '\'use strict\';',
    ...parts,
    '})();',
    '',
  ].join('\n');
  return { code, modules: order };
}

export { BundleError };
