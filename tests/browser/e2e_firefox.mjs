// The extension end to end in Debian's firefox-esr (headless, puppeteer-core over WebDriver BiDi):
// the test build's Firefox folder installed as a temporary add-on, the real native host
// registered by `lowkey install --user` in $HOME/.mozilla (the test sets HOME), the real daemon,
// the upload site's pages. Same scenarios as Chromium but paste and paused (see below).
//   node e2e_firefox.mjs --extension DIR --profile DIR --site ORIGIN --files DIR --phase up|down
//     [--other-site ORIGIN] [--only a,b] [--browser EXE] [--timeout MS]
// The content scripts are in the manifest: pages are opened as soon as the add-on is installed.
// Its moz-extension:// address is random per profile, so no page knows it: no `probe` here.
import { closeWithin, deadline, requireTool } from './common.mjs';
import { e2eArgs, runScenarios } from './e2e_common.mjs';

const puppeteer = requireTool('puppeteer-core');
const opts = e2eArgs();
let browser;
let ok = false;
const limit = deadline(opts.timeout, 'firefox end-to-end run');
try {
  await Promise.race([limit.promise, (async () => {
    browser = await puppeteer.launch({
      browser: 'firefox', executablePath: opts.browser ?? '/usr/bin/firefox-esr', headless: true,
      userDataDir: opts.profile, timeout: opts.timeout, protocolTimeout: opts.timeout,
    });
    process.stderr.write(`${new Date().toISOString()} launched\n`);
    const id = await browser.installExtension(opts.extension);
    process.stderr.write(`${new Date().toISOString()} installed ${id}\n`);
    const adapter = {
      async newPage(url) {
        const page = await browser.newPage();
        await page.goto(url);
        return page;
      },
      async upload(page, selector, paths) {
        const input = await page.$(selector);
        await input.uploadFile(...paths);
      },
      // WebDriver BiDi's input.fileDialogOpened: puppeteer answers it on the input element (the
      // extension's page-world script has put a detached input in the document by then).
      async chooseFile(page, buttonSelector, paths) {
        const [chooser] = await Promise.all([page.waitForFileChooser(), page.click(buttonSelector)]);
        await chooser.accept(paths);
      },
    };
    // Not in Firefox: paste (its ClipboardEvent constructor drops clipboardData), the popup,
    // preset and paused (its remote protocol may neither open extension pages, where the popup,
    // the options and the toggle are, nor click the toolbar, and a key press does not reach an
    // add-on's shortcuts), probe (its extension address is random per profile: no page knows it).
    ok = await runScenarios(adapter, opts, { skip: ['paste', 'popup', 'paused', 'preset', 'probe'] });
    process.stdout.write(`${JSON.stringify({ browser: 'firefox', version: await browser.version(), extension_id: id })}\n`);
  })()]);
} catch (err) {
  process.stderr.write(`e2e_firefox: ${err?.stack ?? err}\n`);
  ok = false;
} finally {
  limit.cancel();
  if (browser) await closeWithin(() => browser.close());
}
process.exit(ok ? 0 : 1);
