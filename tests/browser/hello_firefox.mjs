// Installs the hello test extension into Debian's firefox-esr (headless, puppeteer-core over
// WebDriver BiDi, as a temporary add-on) and waits until it has reported the native host's answer
// to the test server. Exit 0 once the report arrived.
//   node hello_firefox.mjs --extension DIR --profile PROFILE_DIR --port PORT
//     [--browser EXECUTABLE] [--timeout MS]
// Firefox reads per-user native-messaging manifests from $HOME/.mozilla/native-messaging-hosts,
// whatever the profile: the test sets HOME.
import { args, closeWithin, deadline, emit, requireTool, waitForReport } from './common.mjs';

const puppeteer = requireTool('puppeteer-core');

const opts = args();
const started = Date.now();
const until = started + opts.timeout;
const executablePath = opts.browser ?? '/usr/bin/firefox-esr';
let browser;
let code = 1;
const limit = deadline(opts.timeout, 'firefox run');
try {
  await Promise.race([limit.promise, (async () => {
    browser = await puppeteer.launch({
      browser: 'firefox',
      executablePath,
      headless: true,
      userDataDir: opts.profile,
      timeout: opts.timeout,
      protocolTimeout: opts.timeout,
    });
    const launchedMs = Date.now() - started;
    const extensionId = await browser.installExtension(opts.extension);
    const installedMs = Date.now() - started;
    const report = await waitForReport(opts.port, until);
    emit({
      browser: 'firefox',
      version: await browser.version(),
      extension_id: extensionId,
      launch_ms: launchedMs,
      install_ms: installedMs,
      total_ms: Date.now() - started,
      report,
    });
    code = 0;
  })()]);
} catch (err) {
  process.stderr.write(`hello_firefox: ${err?.stack ?? err}\n`);
} finally {
  limit.cancel();
  if (browser) await closeWithin(() => browser.close());
}
process.exit(code);
