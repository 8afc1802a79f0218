#!/usr/bin/env node
// A stand-in for lowkey-native-host, for smoke tests of the extension without the daemon: it
// speaks the same messages (native_host/messages.schema.json). "Protecting" appends a trailer
// to the file, so a test can tell the protected bytes from the original. A photo whose name
// holds "noface" gets error no-face; "fail" gets error daemon-down; "slow" takes 3 s.
import { createHash } from 'node:crypto';

const CHUNK = 64 * 1024;
const TRAILER = Buffer.from('LOWKEY-FAKE-PROTECTED');
let buffer = Buffer.alloc(0);
let paused = false;
const cancelled = new Set();

function send(message) {
  const body = Buffer.from(JSON.stringify(message), 'utf8');
  const header = Buffer.alloc(4);
  header.writeUInt32LE(body.length);
  process.stdout.write(Buffer.concat([header, body]));
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const daemon = () => ({ state: 'ready', ready: true, message: 'fake', version: '0.0.0-fake', paused });

async function protect({ id, name, mime, data }) {
  const photo = Buffer.from(data, 'base64');
  if (/noface/.test(name)) return send({ id, type: 'error', code: 'no-face', message: `no face in ${name}` });
  if (/fail/.test(name)) return send({ id, type: 'error', code: 'daemon-down', message: 'the fake daemon is down' });
  for (const [phase, percent] of [['detect', 10], ['attack', 50], ['encode', 90]]) {
    send({ id, type: 'progress', phase, percent, step: null, steps: null });
    await sleep(/slow/.test(name) ? 1000 : 20);
    if (cancelled.has(id)) return send({ id, type: 'error', code: 'cancelled', message: 'cancelled' });
  }
  const out = Buffer.concat([photo, TRAILER]);
  const count = Math.max(1, Math.ceil(out.length / CHUNK));
  for (let index = 0; index < count; index += 1) {
    send({ id, type: 'chunk', index, count, data: out.subarray(index * CHUNK, (index + 1) * CHUNK).toString('base64') });
  }
  send({
    id, type: 'result', name, mime, size: out.length, chunks: count, measured: true,
    sha256: createHash('sha256').update(out).digest('hex'),
    report: {
      source: name, status: 'protected', seconds: 1.5, preset: 'fake', device: 'cpu', dlib_threshold: 0.6,
      faces: [{ box: [0, 0, 1, 1], score: 0.99, dlib_distance: 0.72, dlib_found_after: true }],
    },
  });
}

function handle(message) {
  const { id, type } = message;
  if (type === 'hello') send({ id, type, version: '0.0.0-fake', protocol: 1, daemon: daemon() });
  else if (type === 'status') {
    send({ id, type, daemon: daemon(), status: { version: '0.0.0-fake', state: 'ready', devices: ['cpu'], preset: 'fake', ensemble: ['fake-a', 'fake-b'], judge: 'dlib', paused, queue: { queued: 0, running: 0, capacity: 8 } } });
  } else if (type === 'pause' || type === 'resume') {
    paused = type === 'pause';
    send({ id, type, paused });
  } else if (type === 'cancel') {
    cancelled.add(message.target);
    send({ id, type, target: message.target, cancelled: true });
  } else if (type === 'protect') protect(message);
  else send({ id: id ?? null, type: 'error', code: 'bad-message', message: `unknown type ${type}` });
}

process.stdin.on('data', (data) => {
  buffer = Buffer.concat([buffer, data]);
  while (buffer.length >= 4) {
    const length = buffer.readUInt32LE(0);
    if (buffer.length < 4 + length) break;
    handle(JSON.parse(buffer.subarray(4, 4 + length).toString('utf8')));
    buffer = buffer.subarray(4 + length);
  }
});
process.stdin.on('end', () => process.exit(0));
