// Test-only background script (Chromium service worker / Firefox event page): on startup, send
// one `hello` to the native host and POST what came back (or the error) to the test's server.
// config.json (written by the test into the temp copy) names the host and the server's port.
const api = globalThis.browser ?? globalThis.chrome;

async function report(cfg, body) {
  // text/plain keeps this a "simple" request: it reaches the server even if CORS were refused.
  await fetch(`http://127.0.0.1:${cfg.port}/result`, {
    method: 'POST',
    headers: { 'Content-Type': 'text/plain' },
    body: JSON.stringify(body),
  });
}

async function main() {
  const cfg = await (await fetch(api.runtime.getURL('config.json'))).json();
  const message = { id: 'hello-1', type: 'hello' };
  const t0 = performance.now();
  let body;
  try {
    const reply = await api.runtime.sendNativeMessage(cfg.host, message);
    body = { ok: true, reply };
  } catch (err) {
    body = { ok: false, error: String(err?.message ?? err) };
  }
  body.ms = Math.round(performance.now() - t0);
  body.extension_id = api.runtime.id;
  body.user_agent = navigator.userAgent;
  await report(cfg, body);
}

main().catch((err) => console.error('hello extension failed', err));
