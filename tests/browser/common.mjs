// Shared by the browser drivers: arguments, the wait for the extension's report, output.
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';

// The tools are devDependencies of extension/ (extension/node_modules, `npm ci --prefix
// extension`): resolve them from there, not from this folder.
export const requireTool = createRequire(new URL('../../extension/package.json', import.meta.url));

export function args() {
  const { values } = parseArgs({
    options: {
      extension: { type: 'string' },  // the generated (temp) extension folder
      profile: { type: 'string' },    // the browser profile folder to use
      port: { type: 'string' },       // the test server's port (GET /result to learn it arrived)
      browser: { type: 'string' },    // the browser's executable (default: Debian's)
      timeout: { type: 'string', default: '60000' },  // ms, for the whole run
    },
  });
  for (const name of ['extension', 'profile', 'port']) {
    if (!values[name]) throw new Error(`--${name} is required`);
  }
  return { ...values, timeout: Number(values.timeout) };
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Rejects after `ms` with a message naming `what`; the timer never keeps Node alive.
export function deadline(ms, what) {
  let timer;
  const promise = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    timer.unref();
  });
  return { promise, cancel: () => clearTimeout(timer) };
}

// Awaits `close()` for at most `ms`: a browser that will not close is killed by the test.
export async function closeWithin(close, ms = 10000) {
  const timeout = new Promise((resolve) => setTimeout(resolve, ms).unref());
  await Promise.race([close().catch(() => {}), timeout]);
}

// Polls the test server until the extension has posted its result; returns it.
export async function waitForReport(port, until) {
  while (Date.now() < until) {
    try {
      const response = await fetch(`http://127.0.0.1:${port}/result`);
      if (response.status === 200) return await response.json();
    } catch {
      // the server is the test's; keep polling until the deadline
    }
    await sleep(100);
  }
  throw new Error('the extension posted no result before the deadline');
}

// One JSON line on stdout: what the test reads besides the server's record.
export function emit(record) {
  process.stdout.write(`${JSON.stringify(record)}\n`);
}
