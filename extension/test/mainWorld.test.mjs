// content/main-world.js (the page-world script) in a small fake DOM (vm): a detached file input
// is put in the document, hidden, before its picker opens; showOpenFilePicker is gone.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import vm from 'node:vm';

const source = readFileSync(new URL('../src/content/main-world.js', import.meta.url), 'utf8');

function page() {
  const opened = [];
  class Node {
    constructor(name) {
      this.nodeName = name;
      this.nodeType = 1;
      this.parentNode = null;
      this.childNodes = [];
      this.style = { props: {}, setProperty(k, v, p) { this.props[k] = [v, p]; } };
    }

    appendChild(child) {
      if (child.parentNode) child.parentNode.childNodes.splice(child.parentNode.childNodes.indexOf(child), 1);
      child.parentNode = this;
      this.childNodes.push(child);
      return child;
    }

    get isConnected() {
      let node = this;
      while (node.parentNode) node = node.parentNode;
      return node === document;
    }
  }
  Node.ELEMENT_NODE = 1;
  class HTMLInputElement extends Node {
    constructor() {
      super('INPUT');
      this.type = 'text';
    }

    click() { opened.push(['click', this, this.isConnected]); }

    showPicker() { opened.push(['showPicker', this, this.isConnected]); }
  }
  const document = new Node('#document');
  document.nodeType = 9;
  document.documentElement = document.appendChild(new Node('HTML'));
  document.body = document.documentElement.appendChild(new Node('BODY'));
  document.createElement = (name) => (name === 'input' ? new HTMLInputElement() : new Node(name.toUpperCase()));
  class Window {}
  Window.prototype.showOpenFilePicker = () => 'picker';
  const context = vm.createContext(Object.assign(Object.create(Window.prototype), { document, Node, HTMLInputElement, Window, Object, Symbol }));
  context.window = context;
  context.showOpenFilePicker = () => 'own';
  vm.runInContext(source, context);
  return { context, document, opened, HTMLInputElement };
}

test('a detached file input is attached, hidden, before its picker opens', () => {
  const p = page();
  const input = p.document.createElement('input');
  input.type = 'file';
  assert.equal(input.isConnected, false);
  input.click();
  assert.equal(p.opened.length, 1);
  assert.equal(p.opened[0][2], true); // connected when the native click ran
  const box = input.parentNode;
  assert.equal(box.nodeName, 'LOWKEY-DETACHED-INPUTS');
  assert.equal(box.hidden, true);
  assert.deepEqual(box.style.props.display, ['none', 'important']);
  assert.equal(box.parentNode, p.document.body);
  // a detached tree moves whole (the page's wrapper keeps its input)
  const wrapper = p.document.createElement('div');
  const inner = wrapper.appendChild(p.document.createElement('input'));
  inner.type = 'file';
  inner.showPicker();
  assert.equal(inner.parentNode, wrapper);
  assert.equal(wrapper.parentNode, box); // the same container
  assert.equal(p.opened[1][0], 'showPicker');
  assert.equal(p.opened[1][2], true);
});

test('inputs in the document, and other inputs, are left where they are', () => {
  const p = page();
  const placed = p.document.body.appendChild(p.document.createElement('input'));
  placed.type = 'file';
  placed.click();
  assert.equal(placed.parentNode, p.document.body);
  const text = p.document.createElement('input');
  text.click();
  assert.equal(text.parentNode, null);
  assert.equal(p.opened.length, 2);
});

test('showOpenFilePicker is removed, so pages use a file input', () => {
  const p = page();
  assert.equal('showOpenFilePicker' in p.context, false);
});

test('the script is idempotent (injected twice: one wrapper)', () => {
  const p = page();
  vm.runInContext(source, p.context);
  const input = p.document.createElement('input');
  input.type = 'file';
  input.click();
  assert.equal(p.opened.length, 1);
});
