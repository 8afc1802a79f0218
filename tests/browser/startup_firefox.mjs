// LowKey from the moment it is installed, in Debian's firefox-esr (issue 22): each try starts a
// fresh profile with an upload page already open, installs LowKey (a temporary add-on), opens
// another upload page at once and chooses a photo there straight away, then chooses one in the
// tab that was open before LowKey. The daemon is down: every photo must be held (the indicator
// offers the choice), never sent.
//   node startup_firefox.mjs --extension DIR --profiles DIR,DIR,... --site ORIGIN --files DIR
//     [--browser EXE] [--timeout MS]
// One JSON line per check ({scenario, try, ok}); exit 0 when all passed.
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { closeWithin, deadline, requireTool } from './common.mjs';
import { checker, expectHeld, lowkeyInPage, waitInPage } from './e2e_common.mjs';

const puppeteer = requireTool('puppeteer-core');
const { values: opts } = parseArgs({
  options: {
    extension: { type: 'string' }, profiles: { type: 'string' }, site: { type: 'string' },
    files: { type: 'string' }, browser: { type: 'string' }, timeout: { type: 'string', default: '600000' },
  },
});
const photo = join(opts.files, 'face.jpg');
const limit = deadline(Number(opts.timeout), 'firefox start-up run');
const { check, fail, passed } = checker();

async function choose(page) {
  const input = await page.$('#file');
  await input.uploadFile(photo);
}

try {
  await Promise.race([limit.promise, (async () => {
    for (const [i, profile] of opts.profiles.split(',').entries()) {
      const browser = await puppeteer.launch({
        browser: 'firefox', executablePath: opts.browser ?? '/usr/bin/firefox-esr', headless: true,
        userDataDir: profile, timeout: 120000, protocolTimeout: 120000,
      });
      try {
        const open = await browser.newPage();
        await open.goto(`${opts.site}/fetch.html?as=open-${i}`);
        await browser.installExtension(opts.extension);
        await check('startup', i, async () => {
          const page = await browser.newPage();
          await page.goto(`${opts.site}/fetch.html?as=startup-${i}`);
          await choose(page);
          return expectHeld(page);
        });
        await check('open-tab', i, async () => {
          const present = await waitInPage(open, lowkeyInPage, null, 20000, 'LowKey in the open tab').catch(() => false);
          await choose(open);
          return `${await expectHeld(open)}${present ? '' : ' (LowKey was not seen in the tab)'}`;
        });
      } finally {
        await closeWithin(() => browser.close());
      }
    }
  })()]);
} catch (err) {
  process.stderr.write(`startup_firefox: ${err?.stack ?? err}\n`);
  fail();
} finally {
  limit.cancel();
}
process.exit(passed() ? 0 : 1);
