// The extension end to end in Debian's chromium (headless, Playwright): the test build of
// extension/ loaded unpacked, the real native host registered by `lowkey install --user` in the
// test's HOME (the profile is $HOME/.config/chromium), the real daemon, the upload site's pages.
//   node e2e_chromium.mjs --extension DIR --profile DIR --site ORIGIN --files DIR --phase up|down
//     [--other-site ORIGIN] [--only a,b] [--browser EXE] [--timeout MS]
// The content scripts are in the manifest: pages are opened at once, nothing waits for them.
// One JSON line per scenario (e2e_common.mjs); exit 0 when all passed.
import { closeWithin, deadline, requireTool } from './common.mjs';
import { e2eArgs, runScenarios } from './e2e_common.mjs';

const { chromium } = requireTool('playwright-core');
const opts = e2eArgs();
let context;
let ok = false;
const limit = deadline(opts.timeout, 'chromium end-to-end run');
try {
  await Promise.race([limit.promise, (async () => {
    context = await chromium.launchPersistentContext(opts.profile, {
      executablePath: opts.browser ?? '/usr/bin/chromium', headless: true,
      args: [`--disable-extensions-except=${opts.extension}`, `--load-extension=${opts.extension}`,
        '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync'],
    });
    const worker = context.serviceWorkers()[0] ?? await context.waitForEvent('serviceworker');
    const id = new URL(worker.url()).host;
    const errors = [];
    worker.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    const adapter = {
      extensionBase: `chrome-extension://${id}/`,
      async newPage(url) {
        const page = await context.newPage();
        await page.goto(url);
        return page;
      },
      upload: (page, selector, paths) => page.setInputFiles(selector, paths),
      async chooseFile(page, buttonSelector, paths) {  // a real click; the page opens the chooser
        const [chooser] = await Promise.all([page.waitForEvent('filechooser'), page.click(buttonSelector)]);
        await chooser.setFiles(paths);
      },
      async openPopup(path = 'popup.html') {  // or another of the extension's pages
        const page = await context.newPage();
        await page.setViewportSize({ width: 420, height: 640 });
        await page.goto(`chrome-extension://${id}/${path}`);
        return page;
      },
      async setPaused(paused) {  // the popup's toggle: the toolbar click's code path
        const popup = await context.newPage();
        await popup.goto(`chrome-extension://${id}/popup.html`);
        const now = await worker.evaluate(async () => (await chrome.storage.local.get('paused')).paused === true);
        if (now !== paused) {
          await popup.click('#toggle');
          // The popup says what the toggle did to the daemon once the host has answered.
          await popup.waitForSelector('#toggle-note[data-daemon]', { timeout: 30000 });
          const told = await popup.getAttribute('#toggle-note', 'data-daemon');
          if (told !== 'told') throw new Error(`the daemon was not told: ${await popup.textContent('#toggle-note')}`);
        }
        await popup.close();
      },
    };
    ok = await runScenarios(adapter, opts);
    process.stdout.write(`${JSON.stringify({ browser: 'chromium', version: context.browser()?.version() ?? null, extension_id: id, worker_errors: errors })}\n`);
  })()]);
} catch (err) {
  process.stderr.write(`e2e_chromium: ${err?.stack ?? err}\n`);
  ok = false;
} finally {
  limit.cancel();
  if (context) await closeWithin(() => context.close());
}
process.exit(ok ? 0 : 1);
