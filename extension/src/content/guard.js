/**
 * The content script's synchronous part: it catches photos chosen for upload before the page
 * sees them, in the capture phase on window: file inputs (`input`, `change`), drag and drop
 * (`drop`) and paste (`paste`).
 *
 * Only this runs in the event: it decides whether to hold the event back
 * (stopImmediatePropagation; for drop and paste also preventDefault), empties the file input so
 * nothing can read or post the original meanwhile, and hands the files to the controller
 * (content/controller.js, made on the first photo), which protects them and gives the page new
 * events with the protected files. Events the controller dispatches are marked (`ours`) and pass
 * untouched; so does everything when LowKey is paused or the frame is not on an enabled site,
 * and any event without a possible photo (a PDF goes through as the trusted event). A file input
 * created by the page but never put in the document is attached (hidden) before its picker opens
 * by content/main-world.js, so its events reach these listeners too.
 */
import { mayBeImage } from '../lib/imageType.js';

/** Where a running content script leaves its handle, in the content scripts' world. */
export const INSTANCE_KEY = '__lowkeyContent';

/**
 * Start the content script in a frame, once: a second injection into the same world (the
 * manifest's script and the one injected into tabs open at install) finds the first alive and
 * does nothing. A first one whose extension is gone (reloaded or updated in Chromium: its
 * `runtime.id` is undefined, it can reach nothing) is stopped and replaced.
 * @param {object} options
 * @param {object} options.global where the handle lives (the content script's globalThis)
 * @param {Window|object} options.win the frame's window
 * @param {object} options.api the browser's extension API
 * @param {(shared: object) => object} options.makeController makes the controller (called on
 *   the first held photo) from {state, ours, held, outputs}
 * @param {(options: object) => {stop: Function}} options.followState keeps `state` up to date
 *   (content/frameState.js)
 * @returns {{alive: () => boolean, stop: () => void, state: object}} the running instance
 */
export function startContent({ global, win, api, makeController, followState }) {
  const previous = global[INSTANCE_KEY];
  if (previous && previous.alive()) return previous;
  previous?.stop();

  // Until the frame is known (followState): protect (fail safe).
  const state = { enabled: true, paused: false, decided: Promise.resolve() };
  const ours = new WeakSet(); // events LowKey dispatched
  // file input -> the token ({}) of its newest held selection, while its files are held back.
  // Only the selection whose token is still here may be given to the input (controller.js).
  const held = new WeakMap();
  const outputs = new WeakSet(); // files LowKey gave the page
  const follower = followState({ api, win, state });

  let controller = null;
  function hand(method, ...args) {
    try {
      controller ??= makeController({ state, ours, held, outputs });
      Promise.resolve(controller[method](...args)).catch((err) => console.error('LowKey:', err));
    } catch (err) {
      console.error('LowKey could not start on this page:', err);
    }
  }

  const HTMLInput = win.HTMLInputElement;
  const isFileInput = (node) => node instanceof HTMLInput && node.type === 'file';
  const active = () => state.enabled && !state.paused;
  const wanted = (files) => active() && files.some((file) => !outputs.has(file) && mayBeImage(file));

  function hold(event, cancelDefault) {
    event.stopImmediatePropagation();
    if (cancelDefault) event.preventDefault();
  }

  function onFileInput(event) {
    if (ours.has(event)) return;
    const input = event.composedPath()[0];
    if (!isFileInput(input)) return;
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
    if (isFileInput(target)) {
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

  const listeners = [['input', onFileInput], ['change', onFileInput], ['drop', onDrop], ['paste', onPaste]];
  for (const [type, listener] of listeners) win.addEventListener(type, listener, true);

  const instance = {
    state,
    alive() {
      try {
        return Boolean(api.runtime?.id);
      } catch {
        return false;
      }
    },
    stop() {
      for (const [type, listener] of listeners) win.removeEventListener(type, listener, true);
      follower.stop();
      if (global[INSTANCE_KEY] === instance) delete global[INSTANCE_KEY];
    },
  };
  global[INSTANCE_KEY] = instance;
  return instance;
}
