// A quick smoke test in headless Firefox ESR (puppeteer-core over WebDriver BiDi), like
// smoke-chromium.mjs: the built extension as a temporary add-on, the fake native host in a
// temporary HOME, a local page with a strict CSP (127.0.0.1 is on the test build's default list): a chosen and a dropped photo reach the page
// protected, a failure gives nothing until "Upload original", a PDF passes untouched.
// (Paste cannot be simulated in Firefox.) Exit 0 when all pass.
//   node scripts/smoke-firefox.mjs [--browser /usr/bin/firefox-esr] [--keep]
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { build } from './build.mjs';
import { TRAILER, checker, jpeg, sleep, startServer, until, writeFakeHost } from './smoke-common.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const puppeteer = createRequire(join(HERE, '..', 'package.json'))('puppeteer-core');
const { values: opts } = parseArgs({ options: { browser: { type: 'string', default: '/usr/bin/firefox-esr' }, keep: { type: 'boolean' } } });
const ids = JSON.parse(readFileSync(join(HERE, '..', '..', 'native_host', 'extension_ids.json'), 'utf8'));
const { check, passed } = checker();

const { folders } = build({ extraHosts: ['127.0.0.1'] });
const tmp = mkdtempSync(join(tmpdir(), 'lowkey-smoke-ff-'));
const { server, url } = await startServer();
let browser;
let code = 1;
try {
  const home = join(tmp, 'home');
  mkdirSync(join(home, '.mozilla', 'native-messaging-hosts'), { recursive: true });
  writeFileSync(join(home, '.mozilla', 'native-messaging-hosts', `${ids.native_host_name}.json`), JSON.stringify({
    name: ids.native_host_name, description: 'fake', path: writeFakeHost(tmp), type: 'stdio',
    allowed_extensions: [ids.firefox.id],
  }));
  browser = await puppeteer.launch({
    browser: 'firefox', executablePath: opts.browser, headless: true,
    userDataDir: join(tmp, 'profile'), env: { ...process.env, HOME: home }, dumpio: Boolean(process.env.LOWKEY_DUMPIO),
    extraPrefsFirefox: { 'devtools.console.stdout.chrome': true, 'devtools.console.stdout.content': true },
  });
  const id = await browser.installExtension(folders.firefox);
  check('installed as the gecko id', id === ids.firefox.id, id);

  await sleep(2000); // the background registers the content script after install
  const page = await browser.newPage();
  await page.goto(url);
  const received = () => page.evaluate(() => window.received);
  const input = await page.$('#file');
  const dir = join(tmp, 'files');
  mkdirSync(dir);
  const file = (name, bytes) => { writeFileSync(join(dir, name), bytes); return join(dir, name); };

  await input.uploadFile(file('a.jpg', jpeg('a')), file('notes.pdf', Buffer.from('%PDF-1.7 x')));
  let got = await until('input', async () => ((await received()).length >= 2 ? received() : null));
  check('file input: photo protected, PDF untouched',
    got[0].name === 'a.jpg' && got[0].tail === TRAILER && got[1].name === 'notes.pdf' && got[1].tail !== TRAILER,
    JSON.stringify(got.map((r) => [r.name, r.type, r.tail])));

  await page.evaluate(() => { window.received = []; });
  await page.evaluate((bytes) => {
    const dt = new DataTransfer();
    dt.items.add(new File([new Uint8Array(bytes)], 'drop.jpg', { type: 'image/jpeg' }));
    document.getElementById('zone').dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
  }, [...jpeg('drop')]);
  got = await until('drop', async () => ((await received()).length ? received() : null));
  check('drop: protected', got[0].name === 'drop.jpg' && got[0].tail === TRAILER, JSON.stringify(got));

  await page.evaluate(() => { window.received = []; });
  await input.uploadFile(file('fail.jpg', jpeg('f')));
  // The indicator's buttons act on trusted clicks only: click where the button is.
  const where = await until('the failed photo\'s buttons', () => page.evaluate(() => {
    const button = document.querySelector('lowkey-indicator')?.shadowRoot
      ?.querySelector('[data-state="failed"] button[data-action="upload-original"]');
    if (!button) return null;
    const r = button.getBoundingClientRect();
    return { x: r.x + r.width / 2, y: r.y + r.height / 2 };
  }));
  await sleep(300);
  check('failure: the page gets nothing', (await received()).length === 0);
  await page.mouse.click(where.x, where.y);
  got = await until('original', async () => ((await received()).length ? received() : null));
  check('failure: "Upload original" gives the original', got[0].name === 'fail.jpg' && got[0].tail !== TRAILER);
  if (opts.keep) await page.screenshot({ path: join(tmp, 'firefox.png') });

  code = passed() ? 0 : 1;
} catch (err) {
  console.error(err);
} finally {
  await browser?.close().catch(() => {});
  server.close();
  if (!opts.keep) rmSync(tmp, { recursive: true, force: true });
  else console.log(`kept ${tmp}`);
}
process.exit(code);
