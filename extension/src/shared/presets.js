/**
 * The presets the extension offers, and what each does to the face: the one place their words
 * live (the options page, the popup and the tests read them here), so the figures can be
 * updated with the measurements. The names are the daemon's (`lowkey/presets.py`); the choice is
 * sent with each photo (the host's `preset` field). `paper` needs checkpoints most users do not
 * have, so it is not offered; names the daemon no longer knows (`fast`, `strong`) are never
 * sent: a stored choice that is not offered here falls back to the default.
 */

/** @typedef {{name: string, title: string, protects: boolean, label: string}} PresetInfo */

/** @type {ReadonlyArray<PresetInfo>} in the order the options page lists them */
export const PRESETS = Object.freeze([
  Object.freeze({
    name: 'default',
    title: 'Protect (default)',
    protects: true,
    label: 'Protects: in our tests, recognisers we never attacked found no protected face among '
      + '1,000 strangers; the face looks visibly altered up close',
  }),
  Object.freeze({
    name: 'subtle',
    title: 'Subtle',
    protects: false,
    label: 'Looks unchanged, does NOT protect: in our measurements every recogniser still '
      + 'recognised every face',
  }),
]);

/** What a photo gets when the user chose nothing. */
export const DEFAULT_PRESET = 'default';

/**
 * The preset in force from a stored value: an offered name, else the default.
 * @param {unknown} value what storage holds
 * @returns {string}
 */
export function presetFrom(value) {
  return PRESETS.some((preset) => preset.name === value) ? value : DEFAULT_PRESET;
}

/**
 * A preset's record (the default's for any name not offered).
 * @param {unknown} name
 * @returns {PresetInfo}
 */
export function presetInfo(name) {
  const chosen = presetFrom(name);
  return PRESETS.find((preset) => preset.name === chosen);
}
