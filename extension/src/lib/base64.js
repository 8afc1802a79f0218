/** Base64 for byte arrays, in Node and in browsers (btoa/atob, a block at a time). */

const BLOCK = 0x8000;
// No quantified group over the whole string: a backtracking regex such as
// /^(?:[A-Za-z0-9+/]{4})*...$/ overflows the stack for a few MB ("Maximum call stack size
// exceeded" in Chromium, "too much recursion" in Firefox). A flat character class and the length
// check say the same: padded base64 whose length is a multiple of 4.
const ALPHABET = /^[A-Za-z0-9+/]*={0,2}$/;

function isStrictBase64(text) {
  return text.length % 4 === 0 && ALPHABET.test(text);
}

/**
 * Encode bytes as base64.
 * @param {Uint8Array|ArrayBuffer} bytes
 * @returns {string}
 */
export function encodeBase64(bytes) {
  const view = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const parts = [];
  for (let i = 0; i < view.length; i += BLOCK) {
    parts.push(String.fromCharCode.apply(null, view.subarray(i, i + BLOCK)));
  }
  return btoa(parts.join(''));
}

/**
 * Decode strict base64 (padded, no whitespace).
 * @param {string} text
 * @returns {Uint8Array}
 * @throws {TypeError} when `text` is not strict base64
 */
export function decodeBase64(text) {
  if (typeof text !== 'string' || !isStrictBase64(text)) throw new TypeError('not base64');
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) out[i] = binary.charCodeAt(i);
  return out;
}

/**
 * The lowercase hex sha256 of bytes (Web Crypto: browsers and Node >= 20).
 * @param {Uint8Array} bytes
 * @returns {Promise<string>}
 */
export async function sha256Hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}
