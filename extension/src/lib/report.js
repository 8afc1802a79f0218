/**
 * What the popup and the in-page indicator show of the daemon's report on a protected photo
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

const NAME = /^[\w.@+-]{1,64}$/; // a recogniser's name as the daemon writes it (dlib, openface, ...)

function names(value) {
  if (!Array.isArray(value)) return null;
  return [...new Set(value.filter((name) => typeof name === 'string' && NAME.test(name)))].slice(0, 16);
}

/**
 * What recognisers that were never attacked made of the protected photo: `recognised_by` (those
 * that still match at least one of its faces; empty: none) among `judges` (those checked). An
 * older daemon sends neither: null (nothing is said). Names that are not plain names are dropped.
 * @param {object} report the daemon's report
 * @returns {{recognisedBy: string[], judges: string[]}|null}
 */
export function recognitionCheck(report) {
  const recognisedBy = names(report?.recognised_by);
  const judges = names(report?.judges);
  if (recognisedBy === null && judges === null) return null;
  return { recognisedBy: recognisedBy ?? [], judges: judges ?? [] };
}

/**
 * The check in plain words: "Still recognised by dlib, openface" when any unattacked recogniser
 * still matches a face, "Not recognised by dlib, openface" (the judges) when none does; null when
 * there is nothing to say (no check, or none named).
 * @param {{recognisedBy: string[], judges: string[]}|null|undefined} check
 * @returns {string|null}
 */
export function recognitionText(check) {
  if (!check) return null;
  if (check.recognisedBy?.length) return `Still recognised by ${check.recognisedBy.join(', ')}`;
  if (check.judges?.length) return `Not recognised by ${check.judges.join(', ')}`;
  return null;
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
    recognition: recognitionCheck(report),
  };
}
