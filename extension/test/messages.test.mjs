import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import {
  HOST_ERROR_CODES, LOCAL_ERROR_CODES, PHASES, PROTOCOL, REQUEST_TYPES, explainError, phaseLabel,
} from '../src/lib/messages.js';

const schema = JSON.parse(readFileSync(new URL('../../native_host/messages.schema.json', import.meta.url)));
const defs = schema.$defs;

test('error codes are the schema\'s', () => {
  assert.deepEqual([...HOST_ERROR_CODES].sort(), [...defs.message_error.properties.code.enum].sort());
});

test('phases are the schema\'s', () => {
  assert.deepEqual([...PHASES].sort(), [...defs.message_progress.properties.phase.enum].sort());
});

test('request types are the schema\'s', () => {
  const types = defs.request.oneOf.map((ref) => defs[ref.$ref.split('/').pop()].properties.type.const);
  assert.deepEqual([...REQUEST_TYPES].sort(), types.sort());
});

test('protocol version is the schema\'s', () => {
  assert.equal(defs.message_hello.properties.protocol.const, PROTOCOL);
});

test('local codes never clash with the host\'s, and every code has words', () => {
  for (const code of LOCAL_ERROR_CODES) assert.ok(!HOST_ERROR_CODES.includes(code), code);
  for (const code of [...HOST_ERROR_CODES, ...LOCAL_ERROR_CODES]) {
    assert.doesNotMatch(explainError(code), /unexpected/, code);
  }
  for (const phase of PHASES) assert.ok(phaseLabel(phase));
});
