// content.js is a classic script (content scripts cannot be modules), so it carries its own
// copy of mayBeImage for the synchronous decision in the event; it must be lib/imageType.js's.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import vm from 'node:vm';
import { mayBeImage } from '../src/lib/imageType.js';

const source = readFileSync(new URL('../src/content.js', import.meta.url), 'utf8');

test('content.js\'s mayBeImage is the library\'s', () => {
  const copy = /\/\/ BEGIN mayBeImage\n([\s\S]*?)\/\/ END mayBeImage/.exec(source)[1];
  const context = vm.createContext({});
  vm.runInContext(`${copy}\nthis.copy = mayBeImage;`, context);
  assert.equal(copy.replace(/\s+/g, ' ').trim(), `function ${mayBeImage.toString().replace(/^function /, '')}`.replace(/\s+/g, ' ').trim()
    .replace(/^function function/, 'function'));
  const files = [
    { type: 'image/jpeg', name: 'a.jpg' }, { type: '', name: 'a.HEIC' }, { type: 'image/gif', name: 'a.gif' },
    { type: 'application/pdf', name: 'a.pdf' }, { type: '', name: 'a.txt' }, { type: 'application/octet-stream', name: 'x' },
    {}, { type: 'image/svg+xml', name: 'a.svg' }, { type: 'video/mp4', name: 'a.mp4' },
  ];
  for (const file of files) assert.equal(context.copy(file), mayBeImage(file), JSON.stringify(file));
});

test('content.js listens in the capture phase on window for the four events', () => {
  for (const type of ['input', 'change', 'drop', 'paste']) {
    assert.match(source, new RegExp(`window\\.addEventListener\\('${type}', \\w+, true\\)`), type);
  }
});
