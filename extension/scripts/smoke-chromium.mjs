// A quick smoke test in headless Chromium (not the end-to-end suite): builds with a host
// permission for 127.0.0.1, registers scripts/fake-native-host.mjs as the native host in a
// temporary profile, loads dist/chromium, and checks on a local page that a chosen, dropped and
// pasted photo reaches the page protected (the fake host's trailer), that a failure gives the
// page nothing until "Upload original", that a no-face photo and a PDF pass untouched, that
// pause passes the original, and that the worker logged no error; the page has a strict CSP.
// Exit 0 when all pass.
//   node scripts/smoke-chromium.mjs [--browser /usr/bin/chromium] [--headed] [--keep (the screenshots)]
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { build } from './build.mjs';
import { drawIcon, encodePng } from './png.mjs';
import { TRAILER, checker, jpeg, sleep, startServer, until, writeFakeHost } from './smoke-common.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const { chromium } = createRequire(join(HERE, '..', 'package.json'))('playwright-core');
const { values: opts } = parseArgs({ options: { browser: { type: 'string', default: '/usr/bin/chromium' }, headed: { type: 'boolean' }, keep: { type: 'boolean' } } });
const ids = JSON.parse(readFileSync(join(HERE, '..', '..', 'native_host', 'extension_ids.json'), 'utf8'));
const { check, passed } = checker();

const { folders } = build({ extraHosts: ['127.0.0.1'] });
const tmp = mkdtempSync(join(tmpdir(), 'lowkey-smoke-'));
const { server, url } = await startServer();
let context;
let code = 1;
try {
  const profile = join(tmp, 'profile');
  mkdirSync(join(profile, 'NativeMessagingHosts'), { recursive: true });
  const wrapper = writeFakeHost(tmp);
  writeFileSync(join(profile, 'NativeMessagingHosts', `${ids.native_host_name}.json`), JSON.stringify({
    name: ids.native_host_name, description: 'fake', path: wrapper, type: 'stdio',
    allowed_origins: [`chrome-extension://${ids.chromium.id}/`],
  }));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: opts.browser, headless: !opts.headed,
    args: [`--disable-extensions-except=${folders.chromium}`, `--load-extension=${folders.chromium}`,
      '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  const worker = context.serviceWorkers()[0] ?? await context.waitForEvent('serviceworker');
  const workerErrors = [];
  worker.on('console', (m) => { if (m.type() === 'error') workerErrors.push(m.text()); });
  check('extension id is the pinned one', new URL(worker.url()).host === ids.chromium.id, worker.url());

  await worker.evaluate(async (extra) => {
    const { sites } = await chrome.storage.local.get('sites');
    await chrome.storage.local.set({ sites: [...(sites ?? []), extra] });
  }, '127.0.0.1');
  const scripts = await until('content script registered', () => worker.evaluate(async () => {
    const [s] = await chrome.scripting.getRegisteredContentScripts();
    return s?.matches.includes('*://127.0.0.1/*') ? s : null;
  }));
  check('content script registered for the site list', Boolean(scripts));

  const page = await context.newPage();
  page.on('pageerror', (e) => console.log('page error:', e.message));
  await page.goto(url);
  const received = () => page.evaluate(() => window.received);

  await page.setInputFiles('#file', [{ name: 'a.jpg', mimeType: 'image/jpeg', buffer: jpeg('a') },
    { name: 'notes.pdf', mimeType: 'application/pdf', buffer: Buffer.from('%PDF-1.7 x') },
    { name: 'b.jpg', mimeType: 'image/jpeg', buffer: jpeg('b') }]);
  let got = await until('input files', async () => ((await received()).length >= 3 ? received() : null));
  check('file input: photos protected, in order, same names and types',
    got.map((r) => `${r.name}:${r.type}:${r.tail === TRAILER}`).join(',') === 'a.jpg:image/jpeg:true,notes.pdf:application/pdf:false,b.jpg:image/jpeg:true',
    JSON.stringify(got.map((r) => [r.name, r.tail])));

  await page.evaluate(() => { window.received = []; });
  await page.setInputFiles('#file', [{ name: 'doc.pdf', mimeType: 'application/pdf', buffer: Buffer.from('%PDF-1.7 y') }]);
  got = await until('pdf', async () => ((await received()).length ? received() : null));
  check('a PDF alone passes untouched', got[0].name === 'doc.pdf' && got[0].size === 10);

  await page.evaluate(() => { window.received = []; });
  await page.evaluate((bytes) => {
    const dt = new DataTransfer();
    dt.items.add(new File([new Uint8Array(bytes)], 'drop.jpg', { type: 'image/jpeg' }));
    document.getElementById('zone').dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
  }, [...jpeg('drop')]);
  got = await until('drop', async () => ((await received()).length ? received() : null));
  check('drop: protected', got[0].name === 'drop.jpg' && got[0].tail === TRAILER);

  await page.evaluate(() => { window.received = []; });
  await page.evaluate((bytes) => {
    const dt = new DataTransfer();
    dt.items.add(new File([new Uint8Array(bytes)], 'paste.png', { type: 'image/png' }));
    document.getElementById('paste').dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
  }, [...encodePng(drawIcon('working', 64), 64, 64)]);
  got = await until('paste', async () => ((await received()).length ? received() : null));
  check('paste: protected', got[0].name === 'paste.png' && got[0].tail === TRAILER && got[0].type === 'image/png');

  await page.evaluate(() => { window.received = []; });
  await page.setInputFiles('#file', [{ name: 'fail.jpg', mimeType: 'image/jpeg', buffer: jpeg('f') }]);
  const button = page.locator('lowkey-indicator [data-state="failed"] button[data-action="upload-original"]');
  await button.waitFor({ timeout: 10000 });
  const files = await page.evaluate(() => document.getElementById('file').files.length);
  check('failure: the page gets nothing, the input is empty', (await received()).length === 0 && files === 0);
  await page.screenshot({ path: join(tmp, 'failed.png') });
  await page.evaluate(() => document.querySelector('lowkey-indicator').shadowRoot.querySelector('button[data-action="upload-original"]').click());
  await sleep(300);
  check('failure: a script\'s click cannot choose the original', (await received()).length === 0);
  await button.click();
  got = await until('original', async () => ((await received()).length ? received() : null));
  check('failure: "Upload original" gives the original', got[0].name === 'fail.jpg' && got[0].tail !== TRAILER);

  await page.evaluate(() => { window.received = []; });
  await page.setInputFiles('#file', [{ name: 'noface.jpg', mimeType: 'image/jpeg', buffer: jpeg('n') }]);
  got = await until('noface', async () => ((await received()).length ? received() : null));
  check('no face: the original passes', got[0].name === 'noface.jpg' && got[0].tail !== TRAILER);

  await page.evaluate(() => { window.received = []; });
  await page.setInputFiles('#file', [{ name: 'slow.jpg', mimeType: 'image/jpeg', buffer: jpeg('s') }]);
  const cancel = page.locator('lowkey-indicator [data-state="protecting"] button[data-action="cancel"]');
  await cancel.waitFor({ timeout: 10000 });
  await cancel.click();
  await sleep(1500);
  check('cancel: the page gets nothing', (await received()).length === 0);

  const stored = await worker.evaluate(() => chrome.storage.local.get(['results', 'preview']));
  check('results are stored for the popup', stored.results?.some((r) => r.judge?.verdict === 'protected'),
    JSON.stringify(stored.results?.[0]));
  check('a before/after preview of the last photo (paste.png) is stored',
    stored.preview?.name === 'paste.png' && stored.preview.before?.startsWith('data:image/jpeg;base64,'));

  const popup = await context.newPage();
  await popup.goto(`chrome-extension://${ids.chromium.id}/popup.html`);
  await until('popup daemon', () => popup.evaluate(() => document.getElementById('daemon').textContent.includes('fake-a')));
  check('popup shows the daemon status', true);
  await popup.screenshot({ path: join(tmp, 'popup.png') });
  await popup.click('#toggle');
  await until('paused', () => worker.evaluate(async () => (await chrome.storage.local.get('paused')).paused === true));
  const badge = await worker.evaluate(() => chrome.action.getBadgeText({}));
  check('toggle pauses; the badge says off', badge === 'off', badge);

  await page.evaluate(() => { window.received = []; });
  await page.setInputFiles('#file', [{ name: 'p.jpg', mimeType: 'image/jpeg', buffer: jpeg('p') }]);
  got = await until('paused upload', async () => ((await received()).length ? received() : null));
  check('paused: the original passes', got[0].tail !== TRAILER);
  await popup.click('#toggle');
  await until('resumed', () => worker.evaluate(async () => (await chrome.storage.local.get('paused')).paused === false));

  check('no error in the service worker', workerErrors.length === 0, workerErrors.join(' | '));
  if (opts.keep) console.log(`screenshots in ${tmp}`);
  code = passed() ? 0 : 1;
} catch (err) {
  console.error(err);
} finally {
  await context?.close().catch(() => {});
  server.close();
  if (code === 0 && !opts.keep) rmSync(tmp, { recursive: true, force: true });
}
process.exit(code);
