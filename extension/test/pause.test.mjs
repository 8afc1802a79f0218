// background/pause.js: a fast double click is serialised (pause, then resume), and what a person
// reads of a failure is LowKey's words, not an exception's text.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakePort, importBuilt } from './helpers.mjs';

const natives = [];
const local = {};
let slowGet = 0;
globalThis.chrome = {
  runtime: { connectNative: () => { const p = new FakePort(); natives.push(p); return p; } },
  storage: {
    local: {
      async get(keys) {
        if (slowGet) await new Promise((r) => setTimeout(r, slowGet));
        return Object.fromEntries([keys].flat().filter((k) => k in local).map((k) => [k, local[k]]));
      },
      set: async (values) => Object.assign(local, values),
    },
    session: { get: async () => ({}), set: async () => {} },
  },
  action: { setIcon: async () => {}, setBadgeText: async () => {}, setBadgeBackgroundColor: async () => {}, setTitle: async () => {} },
};
const { togglePause } = await importBuilt('background/pause.js');

async function answerHost() {
  for (let round = 0; round < 2; round += 1) {
    for (let i = 0; i < 500; i += 1) {
      const pending = natives.flatMap((p) => p.posted.filter((m) => !m.answered).map((m) => [p, m]));
      if (pending.length) {
        const [port, message] = pending[0];
        message.answered = true;
        port.deliver({ id: message.id, type: message.type === 'pause' ? 'paused' : 'resumed' });
        break;
      }
      await new Promise((r) => setTimeout(r, 2));
    }
  }
}

test('a fast double click pauses then resumes, in order', async () => {
  slowGet = 5;
  const first = togglePause();
  const second = togglePause();
  const host = answerHost();
  const results = await Promise.all([first, second]);
  await host;
  assert.deepEqual(results.map((r) => r.paused), [true, false]);
  assert.equal(local.paused, false);
  assert.deepEqual(natives.flatMap((p) => p.posted.map((m) => m.type)), ['pause', 'resume']);
  slowGet = 0;
});
