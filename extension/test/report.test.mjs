import assert from 'node:assert/strict';
import { test } from 'node:test';
import { judgeCheck, recognitionCheck, recognitionText, summariseResult } from '../src/lib/report.js';

test('the judge check reads dlib distances against the threshold', () => {
  const report = {
    status: 'protected', seconds: 3.2, preset: 'default', device: 'cpu', dlib_threshold: 0.6,
    faces: [{ box: [0, 0, 1, 1], score: 0.99, dlib_distance: 0.71, dlib_found_after: true },
      { box: [0, 0, 1, 1], score: 0.98, dlib_distance: 0.64, dlib_found_after: true }],
  };
  assert.deepEqual(judgeCheck(report), {
    model: 'dlib', faces: 2, checked: 2, distance: 0.64, threshold: 0.6, moved: 2, verdict: 'protected',
  });
  const summary = summariseResult({ name: 'a.jpg', site: 'x.com', report, measured: true, time: 5 });
  assert.equal(summary.faces, 2);
  assert.equal(summary.seconds, 3.2);
  assert.equal(summary.judge.verdict, 'protected');
  assert.equal(summary.time, 5);
});

test('partly, not protected, unknown', () => {
  const face = (d, found = true) => ({ box: [], score: 1, dlib_distance: d, dlib_found_after: found });
  assert.equal(judgeCheck({ faces: [face(0.7), face(0.3)] }).verdict, 'partly');
  assert.equal(judgeCheck({ faces: [face(0.3)] }).verdict, 'not-protected');
  assert.equal(judgeCheck({ faces: [face(null, false)] }).verdict, 'protected');
  assert.equal(judgeCheck({ faces: [face(null, null)] }).verdict, 'unknown');
  assert.equal(judgeCheck({}).verdict, 'unknown');
  assert.equal(summariseResult({ name: 'a', report: { faces_omitted: 40 } }).faces, 40);
});

test('recognisers never attacked: "Still recognised by" / "Not recognised by", nothing from an older daemon', () => {
  const still = recognitionCheck({ recognised_by: ['dlib', 'openface'], judges: ['dlib', 'openface'] });
  assert.deepEqual(still, { recognisedBy: ['dlib', 'openface'], judges: ['dlib', 'openface'] });
  assert.equal(recognitionText(still), 'Still recognised by dlib, openface');
  assert.equal(recognitionText(recognitionCheck({ recognised_by: ['openface'], judges: ['dlib', 'openface'] })),
    'Still recognised by openface');
  const none = recognitionCheck({ recognised_by: [], judges: ['dlib', 'openface'] });
  assert.equal(recognitionText(none), 'Not recognised by dlib, openface');
  // An older daemon: neither field. Nothing is said.
  assert.equal(recognitionCheck({ status: 'protected', faces: [] }), null);
  assert.equal(recognitionText(recognitionCheck({})), null);
  assert.equal(recognitionText(null), null);
  // Half a check: what can be said is said, nothing is made up.
  assert.equal(recognitionText(recognitionCheck({ recognised_by: ['dlib'] })), 'Still recognised by dlib');
  assert.equal(recognitionText(recognitionCheck({ recognised_by: [] })), null);
  assert.equal(recognitionText(recognitionCheck({ judges: [] })), null);
  // Junk is not shown to people.
  assert.deepEqual(recognitionCheck({ recognised_by: ['dlib', 3, '<b>x</b>', 'dlib', ''], judges: 'dlib' }),
    { recognisedBy: ['dlib'], judges: [] });
  // The summary the popup lists keeps the check.
  const summary = summariseResult({ name: 'a.jpg', report: { recognised_by: ['dlib'], judges: ['dlib', 'openface'] } });
  assert.deepEqual(summary.recognition, { recognisedBy: ['dlib'], judges: ['dlib', 'openface'] });
  assert.equal(summariseResult({ name: 'b.jpg', report: {} }).recognition, null);
});
