/**
 * Giving files to the page: a DataTransfer the page can read, and events it receives.
 *
 * Firefox: a DataTransfer made in the content script is invisible to the page; one made with
 * the page's own constructor (`window.wrappedJSObject.DataTransfer`) works. Chromium has no
 * wrappedJSObject and needs nothing special.
 */

/**
 * A DataTransfer holding `files` (and string data), made so the page can read it.
 * @param {File[]} files
 * @param {Array<[string, string]>} [strings] other data (type, value), e.g. text/uri-list
 * @returns {DataTransfer}
 */
export function pageDataTransfer(files, strings = []) {
  const PageDataTransfer = window.wrappedJSObject?.DataTransfer;
  const transfer = PageDataTransfer ? new PageDataTransfer() : new DataTransfer();
  for (const file of files) transfer.items.add(file);
  for (const [type, value] of strings) {
    try {
      transfer.setData(type, value);
    } catch {
      // a type the browser refuses: the files matter
    }
  }
  return transfer;
}

/**
 * Dispatch an event LowKey made, marked so LowKey's own listeners let it pass.
 * @param {EventTarget} target
 * @param {Event} event
 * @param {WeakSet<Event>} ours
 * @returns {boolean} dispatchEvent's answer
 */
export function dispatchOurs(target, event, ours) {
  ours.add(event);
  return target.dispatchEvent(event);
}

/**
 * Set a file input's files and give the page the events a user's choice gives.
 * @param {HTMLInputElement} input
 * @param {File[]} files
 * @param {WeakSet<Event>} ours
 */
export function deliverToInput(input, files, ours) {
  input.files = pageDataTransfer(files).files;
  dispatchOurs(input, new Event('input', { bubbles: true, composed: true }), ours);
  dispatchOurs(input, new Event('change', { bubbles: true }), ours);
}

/**
 * A new drop event with `files` at the original target.
 * @param {EventTarget} target
 * @param {File[]} files
 * @param {Array<[string, string]>} strings
 * @param {object} init the original event's coordinates and keys
 * @param {WeakSet<Event>} ours
 */
export function deliverDrop(target, files, strings, init, ours) {
  const dataTransfer = pageDataTransfer(files, strings);
  const event = new DragEvent('drop', { ...init, bubbles: true, cancelable: true, composed: true, dataTransfer });
  dispatchOurs(liveTarget(target), event, ours);
}

/**
 * A new paste event with `files` at the original target.
 * @param {EventTarget} target
 * @param {File[]} files
 * @param {Array<[string, string]>} strings
 * @param {WeakSet<Event>} ours
 */
export function deliverPaste(target, files, strings, ours) {
  const clipboardData = pageDataTransfer(files, strings);
  const event = new ClipboardEvent('paste', { bubbles: true, cancelable: true, composed: true, clipboardData });
  if (!event.clipboardData && event.wrappedJSObject) {
    // Firefox drops clipboardData from the constructor's dictionary: give the page the property.
    try {
      Object.defineProperty(event.wrappedJSObject, 'clipboardData', {
        value: clipboardData.wrappedJSObject ?? clipboardData, configurable: true,
      });
    } catch {
      // the page then sees a paste without files
    }
  }
  dispatchOurs(liveTarget(target), event, ours);
}

function liveTarget(target) {
  return target?.isConnected ? target : (document.activeElement ?? document.body ?? document);
}
