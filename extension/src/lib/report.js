/**
 * What the popup shows of the daemon's report on a protected photo
 * (`lowkey.measure.PhotoReport`, `daemon/openapi.json` `Report`).
 */

/**
 * The check by a model that was not attacked (dlib, black-box): the smallest descriptor
 * distance between a face before and after, against dlib's same-person threshold. A face dlib
 * no longer finds counts as moved.
 * @param {object} report the daemon's report
 * @returns {{model: string, faces: number, checked: number, distance: number|null,
 *   threshold: number, moved: number, verdict: 'protected'|'partly'|'not-protected'|'unknown'}}
 */
export function judgeCheck(report) {
  const faces = Array.isArray(report?.faces) ? report.faces : [];
  const threshold = Number.isFinite(report?.dlib_threshold) ? report.dlib_threshold : 0.6;
  let checked = 0;
  let moved = 0;
  let distance = null;
  for (const face of faces) {
    if (face?.dlib_found_after === false) {
      checked += 1;
      moved += 1;
    } else if (Number.isFinite(face?.dlib_distance)) {
      checked += 1;
      if (face.dlib_distance > threshold) moved += 1;
      distance = distance === null ? face.dlib_distance : Math.min(distance, face.dlib_distance);
    }
  }
  let verdict = 'unknown';
  if (checked > 0) verdict = moved === checked ? 'protected' : moved > 0 ? 'partly' : 'not-protected';
  return { model: 'dlib', faces: faces.length, checked, distance, threshold, moved, verdict };
}

/**
 * A small record of one result for `storage.local` (what the popup lists).
 * @param {{name: string, site?: string|null, report?: object, measured?: boolean, status?: string,
 *   time?: number}} outcome
 * @returns {object}
 */
export function summariseResult({ name, site = null, report = {}, measured = false, status, time }) {
  const faces = Array.isArray(report.faces) ? report.faces.length
    : (Number.isInteger(report.faces_omitted) ? report.faces_omitted : 0);
  return {
    name,
    site,
    time: time ?? Date.now(),
    status: status ?? report.status ?? 'protected',
    faces,
    seconds: Number.isFinite(report.seconds) ? report.seconds : null,
    preset: report.preset ?? null,
    device: report.device ?? null,
    faceSsim: Number.isFinite(report.face_ssim) ? report.face_ssim : null,
    measured: Boolean(measured),
    judge: judgeCheck(report),
  };
}
