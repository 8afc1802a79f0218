/**
 * The in-page progress indicator: a small panel in the bottom-right corner, in a shadow root
 * (the page's styles cannot reach it; it is open, so test drivers can find its buttons, but
 * its buttons act on trusted clicks only: a page's script cannot press them; "Upload original"
 * wants more, see {@link originalClickAllowed}), one row per photo
 * with its name, phase and percent, and buttons: cancel while it waits or runs; retry, upload
 * the original (this once) or cancel when it failed. Short notices say what happened
 * (no face found; not protected on purpose).
 */
import { explainError, phaseLabel } from '../lib/messages.js';
import { recognitionText } from '../lib/report.js';

const STYLE = `
:host { all: initial; }
.panel { position: fixed; right: 16px; bottom: 16px; z-index: 2147483647; width: 320px;
  max-height: 60vh; overflow: auto; font: 13px/1.35 system-ui, sans-serif; color: #202124;
  background: #fff; border: 1px solid #dadce0; border-radius: 10px;
  box-shadow: 0 4px 16px rgba(0,0,0,.18); padding: 8px 10px; }
.panel[hidden] { display: none; }
.title { font-weight: 600; margin: 0 0 4px; display: flex; justify-content: space-between; }
.row { padding: 6px 0; border-top: 1px solid #f1f3f4; }
.row:first-of-type { border-top: 0; }
.name { font-weight: 500; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.line { display: flex; align-items: center; gap: 6px; margin-top: 3px; }
.bar { flex: 1; height: 4px; background: #e8eaed; border-radius: 2px; overflow: hidden; }
.fill { height: 100%; background: #1a73e8; width: 0; transition: width .2s; }
.what { color: #5f6368; font-size: 12px; }
.failed .what { color: #d93025; }
.done .fill { background: #1e8e3e; }
button { font: inherit; font-size: 12px; border: 1px solid #dadce0; background: #fff;
  border-radius: 6px; padding: 2px 8px; cursor: pointer; color: #1a73e8; }
button:hover { background: #f1f3f4; }
button.primary { background: #1a73e8; color: #fff; border-color: #1a73e8; }
.notice { padding: 6px 0; color: #3c4043; border-top: 1px solid #f1f3f4; }
`;

/** How long a failed row must have been visible before "Upload original" acts, in ms. */
export const ORIGINAL_DELAY_MS = 500;

/**
 * Whether a click may upload an original: a real pointer click (trusted, `detail > 0`: not the
 * Enter or Space key a page could steer the user into pressing on a focused button), on a row
 * visible now and for at least {@link ORIGINAL_DELAY_MS} (not a panel the page hid, or showed
 * under the pointer the moment before the user clicked something else).
 * @param {{isTrusted: boolean, detail: number}} event the click
 * @param {number|null} visibleSince when the row was last seen visible (ms), null when not now
 * @param {number} now
 * @returns {boolean}
 */
export function originalClickAllowed(event, visibleSince, now) {
  return Boolean(event?.isTrusted) && Number(event?.detail) > 0
    && typeof visibleSince === 'number' && now - visibleSince >= ORIGINAL_DELAY_MS;
}

/** How long settled rows and notices stay, in ms. */
const LINGER_MS = 4000;
const NOTICE_MS = 7000;

/** The panel for one frame. */
export class Indicator {
  /**
   * @param {Document} doc
   * @param {{onCancel: (id: number) => void, onRetry: (id: number) => void, onOriginal: (id: number) => void}} actions
   */
  constructor(doc, actions) {
    this.doc = doc;
    this.actions = actions;
    this.rows = new Map();
    this.root = null;
  }

  _mount() {
    if (this.root) {
      // The page removed the panel (or replaced the document's element): put it back.
      if (!this.host.isConnected) (this.doc.documentElement ?? this.doc).append(this.host);
      return;
    }
    const host = this.doc.createElement('lowkey-indicator');
    const shadow = host.attachShadow({ mode: 'open' });
    const style = this.doc.createElement('style');
    style.textContent = STYLE;
    const panel = this.doc.createElement('div');
    panel.className = 'panel';
    panel.setAttribute('role', 'status');
    panel.setAttribute('aria-live', 'polite');
    panel.hidden = true;
    const title = this.doc.createElement('div');
    title.className = 'title';
    title.textContent = 'LowKey';
    this.list = this.doc.createElement('div');
    panel.append(title, this.list);
    shadow.append(style, panel);
    (this.doc.documentElement ?? this.doc).append(host);
    this.host = host;
    this.panel = panel;
    this.root = shadow;
  }

  _show() {
    this.panel.hidden = this.list.childElementCount === 0;
  }

  /**
   * Draw a queue item (see lib/uploadQueue.js) as it is now.
   * @param {object} item
   */
  update(item) {
    if (item.state === 'passthrough') return;
    this._mount();
    let row = this.rows.get(item.id);
    if (!row) {
      row = this._row(item);
      this.rows.set(item.id, row);
      this.list.append(row.el);
    }
    clearTimeout(row.timer);
    const { state } = item;
    row.el.className = `row ${state === 'failed' ? 'failed' : ''} ${state === 'protected' ? 'done' : ''}`;
    row.el.dataset.state = state;
    row.fill.style.width = `${Math.round(state === 'protected' ? 100 : item.percent || 0)}%`;
    row.what.textContent = describe(item);
    row.buttons.replaceChildren(...this._buttons(item, row));
    if (['protected', 'no-face', 'original', 'cancelled'].includes(state)) {
      const notice = state === 'no-face' || (state === 'protected' && recognitionText(item.recognition));
      row.timer = setTimeout(() => this._remove(item.id), notice ? NOTICE_MS : LINGER_MS);
    }
    this._show();
  }

  /**
   * A passing notice.
   * @param {string} text
   */
  notice(text) {
    this._mount();
    const el = this.doc.createElement('div');
    el.className = 'notice';
    el.textContent = text;
    this.list.append(el);
    this._show();
    setTimeout(() => {
      el.remove();
      this._show();
    }, NOTICE_MS);
  }

  _row(item) {
    const el = this.doc.createElement('div');
    el.dataset.item = String(item.id);
    const name = this.doc.createElement('div');
    name.className = 'name';
    name.textContent = item.file?.name || 'photo';
    name.title = name.textContent;
    const line = this.doc.createElement('div');
    line.className = 'line';
    const bar = this.doc.createElement('div');
    bar.className = 'bar';
    const fill = this.doc.createElement('div');
    fill.className = 'fill';
    bar.append(fill);
    const buttons = this.doc.createElement('span');
    line.append(bar, buttons);
    const what = this.doc.createElement('div');
    what.className = 'what';
    el.append(name, line, what);
    return { el, fill, what, buttons, timer: null, watch: null, visibleSince: null };
  }

  _button(label, handler, { primary = false, allowed = (event) => event.isTrusted } = {}) {
    const button = this.doc.createElement('button');
    button.type = 'button';
    button.dataset.action = label.toLowerCase().replace(/ /g, '-');
    button.textContent = label;
    if (primary) button.className = 'primary';
    button.addEventListener('click', (event) => {
      event.stopPropagation();
      if (allowed(event)) handler(); // the user's click, never the page's script
    });
    return button;
  }

  /** Whether a row is visible now (its panel in the document, shown, not hidden by styles). */
  _visible(row) {
    if (!this.host?.isConnected || this.panel.hidden || !row.el.isConnected) return false;
    const view = this.doc.defaultView;
    for (const el of [this.host, row.el]) {
      if (typeof el.checkVisibility === 'function'
        && !el.checkVisibility({ opacityProperty: true, visibilityProperty: true })) return false;
      const style = view?.getComputedStyle?.(el);
      if (style && (style.display === 'none' || style.visibility !== 'visible' || Number(style.opacity) < 0.5)) return false;
    }
    const box = row.el.getBoundingClientRect();
    return box.width > 0 && box.height > 0 && box.bottom > 0 && box.right > 0
      && box.top < (view?.innerHeight ?? Infinity) && box.left < (view?.innerWidth ?? Infinity);
  }

  /** Follow whether a failed row stays visible, so "Upload original" can ask how long it was. */
  _watchVisible(row) {
    const now = Date.now();
    row.visibleSince = this._visible(row) ? now : null;
    clearInterval(row.watch);
    row.watch = setInterval(() => { // until the row is redrawn (another state) or removed
      if (!this._visible(row)) row.visibleSince = null;
      else row.visibleSince ??= Date.now();
    }, 100);
  }

  _buttons(item, row) {
    const { id } = item;
    clearInterval(row?.watch);
    if (item.state === 'queued' || item.state === 'protecting') {
      return [this._button('Cancel', () => this.actions.onCancel(id))];
    }
    if (item.state === 'failed') {
      // Retry and Cancel never send anything: trusted clicks, the keyboard's included. The
      // original only from a real pointer click on a row visible for a while.
      if (row) this._watchVisible(row);
      const original = this._button('Upload original', () => this.actions.onOriginal(id), {
        allowed: (event) => {
          if (row && !this._visible(row)) row.visibleSince = null;
          return originalClickAllowed(event, row ? row.visibleSince : null, Date.now());
        },
      });
      original.title = 'Click to upload the photo as it is (unprotected), this once';
      const buttons = [original, this._button('Cancel', () => this.actions.onCancel(id))];
      if (item.protectable !== false) buttons.unshift(this._button('Retry', () => this.actions.onRetry(id), { primary: true }));
      return buttons;
    }
    return [];
  }

  _remove(id) {
    clearInterval(this.rows.get(id)?.watch);
    this.rows.get(id)?.el.remove();
    this.rows.delete(id);
    this._show();
  }
}

/**
 * The words under a photo's bar.
 * @param {object} item a queue item
 * @returns {string}
 */
export function describe(item) {
  switch (item.state) {
    case 'queued': return 'waiting to be protected';
    case 'protecting': return `${phaseLabel(item.phase)} ${Math.round(item.percent || 0)}%`;
    case 'protected': {
      // What recognisers that were never attacked made of it, when the daemon says (a photo
      // still recognised is not called protected).
      const check = recognitionText(item.recognition);
      if (!check) return 'protected';
      return item.recognition.recognisedBy.length ? `uploaded with LowKey's change. ${check}` : `protected. ${check}`;
    }
    case 'no-face': return 'no face found: uploaded as it is';
    case 'original': return 'uploading the original, as you chose';
    case 'cancelled': return 'cancelled: not uploaded';
    case 'failed': {
      const code = item.error?.code;
      if (code === 'unsupported-format') return `${item.error.message}. Nothing was uploaded.`;
      const why = item.error?.message || explainError(code);
      return `Not protected: ${why}. Nothing was uploaded.`;
    }
    default: return '';
  }
}
