// Loads the hello test extension into Debian's chromium (headless, Playwright) and waits until it
// has reported the native host's answer to the test server. Exit 0 once the report arrived.
//   node hello_chromium.mjs --extension DIR --profile USER_DATA_DIR --port PORT
//     [--browser EXECUTABLE] [--timeout MS]
// The profile is $HOME/.config/chromium of the test's HOME: with --user-data-dir, Chromium reads
// per-user native-messaging manifests from <user-data-dir>/NativeMessagingHosts only.
import { args, closeWithin, deadline, emit, requireTool, waitForReport } from './common.mjs';

const { chromium } = requireTool('playwright-core');

const opts = args();
const started = Date.now();
const until = started + opts.timeout;
const executablePath = opts.browser ?? '/usr/bin/chromium';
let context;
let code = 1;
const limit = deadline(opts.timeout, 'chromium run');
try {
  await Promise.race([limit.promise, (async () => {
    context = await chromium.launchPersistentContext(opts.profile, {
      executablePath,
      headless: true,
      timeout: opts.timeout,
      args: [
        `--disable-extensions-except=${opts.extension}`,
        `--load-extension=${opts.extension}`,
        '--no-sandbox',
        '--disable-gpu',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    const launchedMs = Date.now() - started;
    let worker = context.serviceWorkers()[0];
    if (!worker) worker = await context.waitForEvent('serviceworker', { timeout: opts.timeout });
    const extensionId = new URL(worker.url()).host;
    const report = await waitForReport(opts.port, until);
    emit({
      browser: 'chromium',
      version: context.browser()?.version() ?? null,
      extension_id: extensionId,
      launch_ms: launchedMs,
      total_ms: Date.now() - started,
      report,
    });
    code = 0;
  })()]);
} catch (err) {
  process.stderr.write(`hello_chromium: ${err?.stack ?? err}\n`);
} finally {
  limit.cancel();
  if (context) await closeWithin(() => context.close());
}
process.exit(code);
