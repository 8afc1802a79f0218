// LowKey from the browser's first moment, in Debian's chromium (issue 22): each try launches a
// fresh profile (LowKey is installed with it) with an upload page as the start page and chooses
// a photo at once; then, in the same browser, LowKey is disabled, an upload page opened, LowKey
// enabled again, and a photo chosen in that tab, which was open before LowKey came back. The
// daemon is down: every photo must be held (the indicator offers the choice), never sent.
//
// The harness's own race: `--load-extension` installs LowKey anew at every start and its install
// checks finish asynchronously, so the start page can load before Chromium has LowKey at all (CI
// saw it once). A LowKey the user installed is loaded from the profile before the first
// navigation, and Chromium holds back a page its content scripts match until they are ready
// (chrome/browser/extensions/user_script_listener.cc), so that page would always have LowKey.
// When the start page has no LowKey, the launch says so ({"race": ...}), chooses nothing, and the
// try starts again with a fresh copy of its profile; a try that never gets LowKey into its start
// page in RACE_LAUNCHES launches fails (what a regression to scripts registered late would do).
//   node startup_chromium.mjs --extension DIR --profiles DIR,DIR,... --site ORIGIN --files DIR
//     [--browser EXE] [--timeout MS]
// One JSON line per check ({scenario, try, ok}); exit 0 when all passed.
import { spawn } from 'node:child_process';
import { cpSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { closeWithin, deadline, emit, requireTool } from './common.mjs';
import { checker, expectHeld, lowkeyInPage, waitFor, waitInPage } from './e2e_common.mjs';

const { chromium } = requireTool('playwright-core');
const { values: opts } = parseArgs({
  options: {
    extension: { type: 'string' }, profiles: { type: 'string' }, site: { type: 'string' },
    files: { type: 'string' }, browser: { type: 'string' }, timeout: { type: 'string', default: '600000' },
  },
});
const photo = join(opts.files, 'face.jpg');
const limit = deadline(Number(opts.timeout), 'chromium start-up run');
const { check, fail, passed } = checker();
const RACE_LAUNCHES = 4; // launches per try before a start page without LowKey fails it

/** chrome.management from the extensions page (the one page allowed to switch extensions). */
async function setEnabled(context, id, enabled) {
  const page = await context.newPage();
  try {
    await page.goto('chrome://extensions');
    await page.evaluate(([extension, on]) => new Promise((resolve) => chrome.management.setEnabled(extension, on, resolve)),
      [id, enabled]);
  } finally {
    await page.close();
  }
}

/**
 * Start chromium with `url` as its start page (Playwright's launcher will not open one: it
 * starts on about:blank) and connect to it over CDP.
 * @returns {Promise<{browser: object, context: object, process: object}>}
 */
async function launchWith(profile, url) {
  const child = spawn(opts.browser ?? '/usr/bin/chromium', [
    '--headless', `--user-data-dir=${profile}`, '--remote-debugging-port=0',
    `--disable-extensions-except=${opts.extension}`, `--load-extension=${opts.extension}`,
    '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', url,
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  const endpoint = await new Promise((resolve, reject) => {
    let text = '';
    child.stderr.on('data', (chunk) => {
      text += chunk;
      const found = /DevTools listening on (ws:\/\/\S+)/.exec(text);
      if (found) resolve(found[1]);
    });
    child.on('exit', (code) => reject(new Error(`chromium exited (${code}) before it listened:\n${text.slice(-2000)}`)));
  });
  child.stderr.resume();
  const browser = await chromium.connectOverCDP(endpoint);
  return { browser, context: browser.contexts()[0], process: child };
}

try {
  await Promise.race([limit.promise, (async () => {
    const profiles = opts.profiles.split(',');
    for (const [i, profile] of profiles.entries()) {
      const url = `${opts.site}/fetch.html?as=startup-${i}`;
      for (let launch = 0; ; launch += 1) {
        const fresh = `${profile}.launch${launch}`; // the try's profile, as it was before any start
        cpSync(profile, fresh, { recursive: true });
        const { browser, context, process: child } = await launchWith(fresh, url);
        try {
          // The start page, as the browser opened it: nothing waits for LowKey.
          const page = await waitFor(() => context.pages().find((p) => p.url().startsWith(opts.site)), 30000, 'the start page');
          if (!await page.evaluate(lowkeyInPage) && launch + 1 < RACE_LAUNCHES) {
            emit({ race: i, launch, detail: 'the start page loaded before Chromium had installed LowKey: nothing chosen, started again' });
            continue;
          }
          await check('startup', i, async () => {
            await page.setInputFiles('#file', [photo]);
            return `${await expectHeld(page)}${launch ? ` (launch ${launch + 1})` : ''}`;
          });
          await check('enable', i, async () => {
            const worker = context.serviceWorkers()[0] ?? await context.waitForEvent('serviceworker');
            const id = new URL(worker.url()).host;
            await setEnabled(context, id, false);
            const other = await context.newPage();
            await other.goto(`${opts.site}/fetch.html?as=enable-${i}`);
            await setEnabled(context, id, true);
            // The user chooses a photo a moment later; the photo is chosen even if LowKey never
            // reaches the tab (then the page gets it, and the test says so).
            const present = await waitInPage(other, lowkeyInPage, null, 20000, 'LowKey in the open tab').catch(() => false);
            await other.setInputFiles('#file', [photo]);
            return `${await expectHeld(other)}${present ? '' : ' (LowKey was not seen in the tab)'}`;
          });
          break;
        } finally {
          await closeWithin(() => browser.close());
          child.kill('SIGKILL');
        }
      }
    }
  })()]);
} catch (err) {
  process.stderr.write(`startup_chromium: ${err?.stack ?? err}\n`);
  fail();
} finally {
  limit.cancel();
}
process.exit(passed() ? 0 : 1);
