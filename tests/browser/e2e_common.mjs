// The end-to-end scenarios of the extension, shared by the Chromium and Firefox drivers. Each runs
// on a page of the test upload site (tests/browser/pages/, served by tests/upload_site.py) with
// the real extension, native host and daemon, and reports what the page did; the pytest side
// (tests/test_extension_e2e.py) checks what the site received.
//
// A driver passes an adapter: {newPage(), upload(page or frame, selector, paths),
// chooseFile(page, buttonSelector, paths) (a real click that opens a file chooser, answered
// with `paths`), setPaused(bool), extensionBase (the extension's URL, where a page could know
// it: Chromium's id is fixed)}; pages and frames are Playwright's or Puppeteer's (evaluate,
// goto, frames, url, mouse.click work the same in both).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { emit, sleep } from './common.mjs';

export function e2eArgs() {
  const { values } = parseArgs({
    options: {
      extension: { type: 'string' },  // the built test extension (dist/<browser> of a test build)
      profile: { type: 'string' },    // the browser profile folder
      site: { type: 'string' },       // the upload site's origin
      'other-site': { type: 'string' }, // another origin of it (on no list: an upload widget's)
      files: { type: 'string' },      // folder with face.jpg, face2.png, wall.png, notes.txt
      phase: { type: 'string' },      // up: the daemon runs; down: it is stopped
      only: { type: 'string' },       // comma-separated scenarios (default: all of the phase)
      screenshots: { type: 'string' }, // a folder: save the popup and the in-page choice there
      browser: { type: 'string' },
      timeout: { type: 'string', default: '300000' },  // ms, the whole run
    },
  });
  for (const name of ['extension', 'profile', 'site', 'files', 'phase']) {
    if (!values[name]) throw new Error(`--${name} is required`);
  }
  return { ...values, otherSite: values['other-site'], timeout: Number(values.timeout) };
}

/** Poll `fn(page)` (evaluated in the page) until it returns something truthy. */
export async function waitInPage(page, fn, arg, ms, what) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const value = await page.evaluate(fn, arg).catch(() => null);
    if (value) return value;
    await sleep(150);
  }
  throw new Error(`timed out after ${ms} ms: ${what}`);
}

export const statusText = () => document.getElementById('status')?.textContent ?? '';
export const uploaded = () => (document.getElementById('status')?.textContent ?? '').startsWith('uploaded')
  && document.getElementById('status').textContent;

/** The centre of a button in the extension's in-page indicator (open shadow root), or null. */
export function indicatorButton([state, action]) {
  const root = document.querySelector('lowkey-indicator')?.shadowRoot;
  const button = root?.querySelector(`[data-state="${state}"] button[data-action="${action}"]`);
  if (!button) return null;
  const r = button.getBoundingClientRect();
  return r.width ? { x: r.x + r.width / 2, y: r.y + r.height / 2 } : null;
}

/** Whether LowKey's page-world script runs in the page (it wraps HTMLInputElement's click). */
export const lowkeyInPage = () => !String(HTMLInputElement.prototype.click).includes('[native code]');

/**
 * With the daemon down: the photo chosen on `page` must be held (LowKey's indicator offers the
 * choice) and the page must get nothing. Fails as soon as the page got a file.
 */
export async function expectHeld(page) {
  const seen = await waitInPage(page, () => {
    const status = document.getElementById('status')?.textContent ?? '';
    if (status !== 'idle') return `the page got a file: ${status}`;
    const root = document.querySelector('lowkey-indicator')?.shadowRoot;
    return root?.querySelector('[data-state="failed"] button[data-action="upload-original"]') ? 'held' : null;
  }, null, 60000, 'LowKey holds the photo (its indicator offers the choice)');
  if (seen !== 'held') throw new Error(seen);
  await sleep(2000); // nothing may reach the page while the user has not chosen
  const status = await page.evaluate(statusText);
  if (status !== 'idle') throw new Error(`the page got a file while held: ${status}`);
  return 'held, the page got nothing';
}

/** Dispatch a synthetic drop or paste of `files` ([{name, type, bytes}]) at `selector`. */
function dispatchFiles([kind, selector, files]) {
  const dt = new DataTransfer();
  for (const f of files) dt.items.add(new File([new Uint8Array(f.bytes)], f.name, { type: f.type }));
  const target = document.querySelector(selector);
  const event = kind === 'drop'
    ? new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true })
    : new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true });
  target.dispatchEvent(event);
}

const PROTECT_MS = 240000; // one photo through a CPU daemon, with margin for a busy machine

/** Poll `fn()` (in Node) until it returns something truthy. */
export async function waitFor(fn, ms, what) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const value = await fn();
    if (value) return value;
    await sleep(150);
  }
  throw new Error(`timed out after ${ms} ms: ${what}`);
}

function fileArg(files, name, type) {
  return { name, type, bytes: [...readFileSync(join(files, name))] };
}

/** The scenarios: name -> async (adapter, opts) => detail (throws on failure). */
export const SCENARIOS = {
  // Daemon running ---------------------------------------------------------------------------
  async form(a, o) {
    const page = await a.newPage(`${o.site}/form.html`);
    await a.upload(page, '#file', [join(o.files, 'face.jpg')]);
    await waitInPage(page, () => (document.getElementById('status').textContent.startsWith('chosen')
      ? document.getElementById('status').textContent : null), null, PROTECT_MS, 'the page saw the chosen file');
    const chosen = await page.evaluate(statusText);
    // Submitting navigates away: the evaluate may end with the page it ran in.
    await page.evaluate(() => document.getElementById('submit').click()).catch(() => null);
    await waitInPage(page, () => document.body.textContent.includes('received'), null, 30000,
      'the form was posted');
    return chosen;
  },
  async fetch(a, o) {
    const page = await a.newPage(`${o.site}/fetch.html`);
    await a.upload(page, '#file', [join(o.files, 'face.jpg')]);
    return waitInPage(page, uploaded, null, PROTECT_MS, 'fetch upload');
  },
  async dataurl(a, o) {
    const page = await a.newPage(`${o.site}/dataurl.html`);
    await a.upload(page, '#file', [join(o.files, 'face2.png')]);
    return waitInPage(page, uploaded, null, PROTECT_MS, 'data URL upload');
  },
  async drop(a, o) {
    const page = await a.newPage(`${o.site}/drop.html`);
    await page.evaluate(dispatchFiles, ['drop', '#zone', [fileArg(o.files, 'face.jpg', 'image/jpeg')]]);
    return waitInPage(page, uploaded, null, PROTECT_MS, 'drop upload');
  },
  async paste(a, o) {
    const page = await a.newPage(`${o.site}/paste.html`);
    await page.evaluate(dispatchFiles, ['paste', '#target', [fileArg(o.files, 'face2.png', 'image/png')]]);
    return waitInPage(page, uploaded, null, PROTECT_MS, 'paste upload');
  },
  async multi(a, o) {
    const page = await a.newPage(`${o.site}/multi.html`);
    await a.upload(page, '#file', ['face.jpg', 'notes.txt', 'face2.png'].map((n) => join(o.files, n)));
    return waitInPage(page, uploaded, null, 2 * PROTECT_MS, 'multi-file upload');
  },
  async react(a, o) {
    const page = await a.newPage(`${o.site}/react.html`);
    await a.upload(page, '#file', [join(o.files, 'face.jpg')]);
    return waitInPage(page, uploaded, null, PROTECT_MS, 'React-style upload');
  },
  async detached(a, o) {  // a file input the page never put in the document, opened by click()
    const page = await a.newPage(`${o.site}/detached.html`);
    await a.chooseFile(page, '#pick', [join(o.files, 'face.jpg')]);
    return waitInPage(page, uploaded, null, PROTECT_MS, 'upload from a detached input');
  },
  async noface(a, o) {  // a photo without a face passes through, and the user is told
    const page = await a.newPage(`${o.site}/fetch.html?as=noface`);
    await a.upload(page, '#file', [join(o.files, 'wall.png')]);
    const done = await waitInPage(page, uploaded, null, PROTECT_MS, 'the photo without a face');
    const told = await waitInPage(page, () => document.querySelector('lowkey-indicator')?.shadowRoot
      ?.textContent.match(/no face/i)?.[0], null, 10000, 'the user is told there was no face');
    return `${done}; told: ${told}`;
  },
  async cancel(a, o) {  // the indicator's cancel button: the page gets nothing
    const page = await a.newPage(`${o.site}/fetch.html?as=cancel`);
    await a.upload(page, '#file', [join(o.files, 'face.jpg')]);
    const where = await waitInPage(page, indicatorButton, ['protecting', 'cancel'], 60000,
      'the protecting photo offers cancel');
    await page.mouse.click(where.x, where.y);
    await sleep(3000);
    const status = await page.evaluate(statusText);
    if (status !== 'idle') throw new Error(`the page got something after cancel: ${status}`);
    return status;
  },
  async popup(a, o) {  // what the popup shows after the photos above
    const page = await a.openPopup();
    const shown = await waitInPage(page, () => {
      const results = [...document.querySelectorAll('#results li')].map((li) => li.textContent);
      const daemon = document.getElementById('daemon').textContent;
      const before = document.getElementById('before').src;
      const after = document.getElementById('after').src;
      const preset = [document.getElementById('preset-name').textContent,
        document.getElementById('preset-label').textContent];
      return results.length && daemon.includes('Ensemble') && before.startsWith('data:image/')
        && after.startsWith('data:image/') && !document.getElementById('preview').hidden
        ? { results, daemon, preset } : null;
    }, null, 30000, 'the popup shows the daemon, the results and a before/after preview');
    // What recognisers never attacked made of each photo: the daemon's list when it sends one
    // ("Still recognised by ..." / "Not recognised by ..."), else dlib's check.
    const judged = shown.results.filter((r) => /dlib \(not attacked\)|(Still|Not) recognised by/.test(r));
    if (!judged.length) throw new Error(`no result shows the unattacked model's check: ${shown.results}`);
    if (!shown.daemon.includes('sface')) throw new Error(`the popup's daemon facts: ${shown.daemon}`);
    // The preset in force (nothing chosen: the default) and what it does to the face.
    if (shown.preset[0] !== 'default' || !shown.preset[1].startsWith('Protects:')) {
      throw new Error(`the popup's preset: ${shown.preset}`);
    }
    if (o.screenshots) await page.screenshot({ path: join(o.screenshots, 'extension-popup.png'), fullPage: true });
    await page.close();
    return `${shown.results.length} results; ${judged[0]}; preset ${shown.preset.join(': ')}`;
  },
  // The preset chosen on the options page goes with the photo to the daemon, whose report the
  // popup shows (Chromium: Firefox's remote protocol cannot open extension pages).
  async preset(a, o) {
    const options = await a.openPopup('options.html');
    await options.click('input[name="preset"][value="subtle"]');
    await waitInPage(options, () => document.getElementById('preset-note').textContent, null, 10000, 'the choice was stored');
    try {
      const page = await a.newPage(`${o.site}/fetch.html?as=subtle`);
      await a.upload(page, '#file', [join(o.files, 'face.jpg')]);
      const done = await waitInPage(page, uploaded, null, PROTECT_MS, 'upload with the subtle preset');
      const popup = await a.openPopup();
      const shown = await waitInPage(popup, () => {
        const first = document.querySelector('#results li')?.textContent ?? '';
        const preset = document.getElementById('preset-name').textContent;
        return first.includes('subtle') && preset === 'subtle'
          ? [first, document.getElementById('preset-label').textContent] : null;
      }, null, 30000, 'the popup shows the subtle preset and a result made with it');
      if (!shown[1].startsWith('Looks unchanged, does NOT protect')) throw new Error(`subtle's label: ${shown[1]}`);
      await popup.close();
      return `${done}; ${shown.join('; ')}`;
    } finally {
      await options.click('input[name="preset"][value="default"]');
      await waitInPage(options, () => document.getElementById('preset-note').textContent.includes('"default"'),
        null, 10000, 'back to the default');
      await options.close();
    }
  },
  async paused(a, o) {
    await a.setPaused(true);
    try {
      const page = await a.newPage(`${o.site}/fetch.html?as=paused`);
      await a.upload(page, '#file', [join(o.files, 'face.jpg')]);
      return await waitInPage(page, uploaded, null, 30000, 'upload while paused');
    } finally {
      await a.setPaused(false);
    }
  },
  // An upload frame of another origin (not on LowKey's list) in a page of an enabled site: held
  // and protected like the page's own inputs (issue 22).
  async frame(a, o) {
    const page = await a.newPage(`${o.site}/frame.html?child=${encodeURIComponent(o.otherSite)}`);
    const frame = await waitFor(() => page.frames().find((f) => f.url().startsWith(`${o.otherSite}/widget.html`)),
      30000, 'the upload frame');
    await waitInPage(frame, () => document.getElementById('file') !== null, null, 30000, 'the frame\'s input');
    await a.upload(frame, '#file', [join(o.files, 'face.jpg')]);
    const done = await waitInPage(frame, uploaded, null, PROTECT_MS, 'upload from the frame');
    const told = await waitInPage(frame, () => document.querySelector('lowkey-indicator')?.shadowRoot
      ?.querySelector('[data-state]')?.dataset.state, null, 10000, 'LowKey\'s indicator in the frame');
    return `${done}; indicator: ${told}`;
  },
  // What a page can learn: none of LowKey's files loads from the page under its known URL.
  async probe(a, o) {
    if (!a.extensionBase) throw new Error('the driver knows no extension URL');
    const page = await a.newPage(`${o.site}/probe.html?base=${encodeURIComponent(a.extensionBase)}`);
    const status = await waitInPage(page, () => (document.getElementById('status').textContent.startsWith('probed')
      ? document.getElementById('status').textContent : null), null, 120000, 'the probe');
    const reachable = JSON.parse(status.slice('probed '.length));
    if (reachable.length) throw new Error(`a page loaded LowKey's files: ${JSON.stringify(reachable)}`);
    return `nothing of ${a.extensionBase} loaded`;
  },
  // Daemon stopped ---------------------------------------------------------------------------
  async down(a, o) {
    const page = await a.newPage(`${o.site}/fetch.html?as=down`);
    await a.upload(page, '#file', [join(o.files, 'face.jpg')]);
    const where = await waitInPage(page, indicatorButton, ['failed', 'upload-original'], 60000,
      'the failed photo offers "upload the original"');
    await sleep(3000);  // nothing may reach the page while the user has not chosen
    if (o.screenshots) await page.screenshot({ path: join(o.screenshots, 'extension-choice.png') });
    const before = await page.evaluate(statusText);
    if (before !== 'idle') throw new Error(`the page got something before the user chose: ${before}`);
    await page.mouse.click(where.x, where.y);  // a real (trusted) click
    const after = await waitInPage(page, uploaded, null, 30000, 'the original after the user chose it');
    return `before the choice: ${before}; after: ${after}`;
  },
};

export const PHASES = {
  up: ['form', 'fetch', 'dataurl', 'drop', 'paste', 'multi', 'react', 'detached', 'noface', 'cancel',
    'popup', 'paused'],
  down: ['down'],
};

/** Run the phase's scenarios (less `skip`), one JSON line each; true when all passed. */
export async function runScenarios(adapter, opts, { skip = [] } = {}) {
  const names = (opts.only ? opts.only.split(',') : PHASES[opts.phase]).filter((n) => !skip.includes(n));
  let ok = true;
  for (const name of names) {
    const started = Date.now();
    process.stderr.write(`${new Date().toISOString()} ${name}: start\n`);
    try {
      const detail = await SCENARIOS[name](adapter, opts);
      process.stdout.write(`${JSON.stringify({ scenario: name, ok: true, ms: Date.now() - started, detail })}\n`);
    } catch (err) {
      ok = false;
      process.stdout.write(`${JSON.stringify({ scenario: name, ok: false, ms: Date.now() - started, error: String(err?.stack ?? err) })}\n`);
    }
  }
  return ok;
}

/**
 * Named checks that each emit one JSON line ({scenario, try, ok, ms, detail or error}):
 * `check(scenario, attempt, fn)` runs `fn` and records its outcome, `fail()` marks the run
 * failed, `passed()` says whether every check passed.
 */
export function checker() {
  let ok = true;
  async function check(scenario, attempt, fn) {
    const started = Date.now();
    process.stderr.write(`${new Date().toISOString()} ${scenario} ${attempt}: start\n`);
    try {
      const detail = await fn();
      emit({ scenario, try: attempt, ok: true, ms: Date.now() - started, detail });
    } catch (err) {
      ok = false;
      emit({ scenario, try: attempt, ok: false, ms: Date.now() - started, error: String(err?.stack ?? err) });
    }
  }
  return { check, fail: () => { ok = false; }, passed: () => ok };
}
