/*
 * LowKey's content script (a classic script: run at document_start in every frame of an
 * enabled site). It catches photos chosen for upload before the page sees them, in the capture
 * phase on window: file inputs (`input`, `change`), drag and drop (`drop`) and paste (`paste`).
 *
 * Only this file's synchronous part runs in the event: it decides whether to hold the event
 * back (stopImmediatePropagation; for drop and paste also preventDefault), empties the file
 * input so nothing can read or post the original meanwhile, and hands the files to the
 * controller (content/controller.js, an ES module loaded on start), which protects them and
 * gives the page new events with the protected files. Events the controller dispatches are
 * marked (`ours`) and pass untouched; so does everything when LowKey is paused or the site is
 * not enabled, and any event without a possible photo (a PDF goes through as the trusted event).
 * A file input created by the page but never put in the document is attached (hidden) before
 * its picker opens by content/main-world.js, so its events reach these listeners too.
 */
(() => {
  'use strict';

  if (globalThis.__lowkeyContent) return; // injected twice (extension reloaded)
  globalThis.__lowkeyContent = true;

  const api = globalThis.browser ?? globalThis.chrome;
  // Filled by the controller from storage.local; until then protect (fail safe).
  const state = { enabled: true, paused: false };
  const ours = new WeakSet(); // events LowKey dispatched
  // file input -> the token ({}) of its newest held selection, while its files are held back.
  // Only the selection whose token is still here may be given to the input (controller.js).
  const held = new WeakMap();
  const outputs = new WeakSet(); // files LowKey gave the page

  const controller = import(api.runtime.getURL('content/controller.js'))
    .then((module) => module.startController({ api, state, ours, held, outputs }));
  controller.catch((err) => console.error('LowKey could not start on this page:', err));

  // -- what may be a photo (as lib/imageType.js mayBeImage; test/content.test.mjs checks) --
  // BEGIN mayBeImage
  function mayBeImage(file) {
    const type = String(file?.type ?? '').toLowerCase();
    if (type.startsWith('image/')) return type !== 'image/svg+xml';
    if (type && type !== 'application/octet-stream') return false;
    return !/\.(pdf|txt|docx?|xlsx?|pptx?|zip|mp4|mov|webm|mp3|wav|svg)$/i.test(file?.name ?? '');
  }
  // END mayBeImage

  const active = () => state.enabled && !state.paused;
  const wanted = (files) => active() && files.some((file) => !outputs.has(file) && mayBeImage(file));

  function hold(event, cancelDefault) {
    event.stopImmediatePropagation();
    if (cancelDefault) event.preventDefault();
  }

  function hand(method, ...args) {
    controller.then((c) => c[method](...args)).catch((err) => console.error('LowKey:', err));
  }

  function onFileInput(event) {
    if (ours.has(event)) return;
    const input = event.composedPath()[0];
    if (!(input instanceof HTMLInputElement) || input.type !== 'file') return;
    const files = Array.from(input.files ?? []);
    const fresh = files.length > 0 && !files.every((file) => outputs.has(file));
    if (held.has(input) && !fresh) {
      hold(event, false); // the other event of a selection already held (input, then change)
      return;
    }
    if (!wanted(files)) {
      if (held.has(input)) {
        // A newer choice the page may have as it is (a PDF, or LowKey paused) replaces a held
        // one: the held photos must never land on the input after it. Forget them now (the
        // check in the controller's delivery is synchronous) and cancel their batch.
        held.delete(input);
        hand('release', input);
      }
      return;
    }
    hold(event, false);
    const token = {};
    held.set(input, token);
    input.value = ''; // the page can neither read nor post the original meanwhile
    hand('fromInput', input, files, token);
  }

  function transferStrings(transfer) {
    return Array.from(transfer.types ?? [])
      .filter((type) => type !== 'Files')
      .map((type) => [type, transfer.getData(type)]);
  }

  function pointerInit(event) {
    const init = {};
    for (const key of ['clientX', 'clientY', 'screenX', 'screenY', 'ctrlKey', 'shiftKey',
      'altKey', 'metaKey', 'button', 'buttons']) init[key] = event[key];
    return init;
  }

  function onDrop(event) {
    if (ours.has(event) || !event.dataTransfer) return;
    const target = event.composedPath()[0];
    const files = Array.from(event.dataTransfer.files ?? []);
    if (!wanted(files)) return;
    if (target instanceof HTMLInputElement && target.type === 'file') {
      // Dropped on a file input: the browser sets its files and fires input/change (held by
      // onFileInput), but the page's own drop listeners would read the originals from
      // dataTransfer. Stop the event for them, without preventDefault (the browser must still
      // fill the input).
      event.stopImmediatePropagation();
      return;
    }
    hold(event, true);
    hand('fromDrop', target, files, transferStrings(event.dataTransfer), pointerInit(event));
  }

  function onPaste(event) {
    if (ours.has(event) || !event.clipboardData) return;
    const files = Array.from(event.clipboardData.files ?? []);
    if (!wanted(files)) return;
    hold(event, true);
    hand('fromPaste', event.composedPath()[0], files, transferStrings(event.clipboardData));
  }

  window.addEventListener('input', onFileInput, true);
  window.addEventListener('change', onFileInput, true);
  window.addEventListener('drop', onDrop, true);
  window.addEventListener('paste', onPaste, true);
})();
