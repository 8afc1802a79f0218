/*
 * LowKey's page-world script (registered with world: 'MAIN' at document_start in every frame of
 * an enabled site; a classic script with no extension API: it runs in the page's own world).
 *
 * A page may open a file picker on an input it never puts in the document
 * (`const i = document.createElement('input'); i.type = 'file'; i.onchange = ...; i.click()`):
 * the events of such an input never reach the content script's listeners on window, so the page
 * would get the original photo. Before such an input's picker opens (click, showPicker), its
 * detached tree is put in a hidden container in the document: its input/change events then pass
 * through window, where content.js holds them like any other. The File System Access picker
 * (showOpenFilePicker), which no event reveals, is removed: pages fall back to an input.
 */
(() => {
  'use strict';

  const FLAG = Symbol.for('lowkey.main-world');
  if (window[FLAG]) return;
  Object.defineProperty(window, FLAG, { value: true });

  const proto = window.HTMLInputElement?.prototype;
  let box = null;

  function container() {
    if (box?.isConnected) return box;
    box = document.createElement('lowkey-detached-inputs');
    box.hidden = true;
    box.style.setProperty('display', 'none', 'important');
    (document.body ?? document.documentElement)?.appendChild(box);
    return box;
  }

  /** Put a detached file input's tree in the document (hidden) so its events reach window. */
  function attach(input) {
    try {
      if (!(input instanceof window.HTMLInputElement) || input.type !== 'file' || input.isConnected) return;
      let root = input;
      while (root.parentNode) root = root.parentNode;
      // A detached element tree moves whole; an input in a fragment or a detached shadow tree
      // moves alone (its tree cannot be appended as an element).
      const node = root.nodeType === Node.ELEMENT_NODE ? root : input;
      container().appendChild(node);
    } catch {
      // never break the page's own picker
    }
  }

  function wrap(name) {
    const original = proto?.[name];
    if (typeof original !== 'function') return;
    const descriptor = Object.getOwnPropertyDescriptor(proto, name);
    const wrapper = {
      [name](...args) {
        attach(this);
        return original.apply(this, args);
      },
    }[name];
    Object.defineProperty(proto, name, { ...descriptor, value: wrapper });
  }

  wrap('click');
  wrap('showPicker');

  for (const owner of [window, Object.getPrototypeOf(window), window.Window?.prototype]) {
    try {
      if (owner && Object.prototype.hasOwnProperty.call(owner, 'showOpenFilePicker')) delete owner.showOpenFilePicker;
    } catch {
      // not configurable: left as it is
    }
  }
})();
