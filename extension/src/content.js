/**
 * LowKey's content script, in every frame of every page at document_start (the manifest's
 * `content_scripts`; injected into the tabs already open when LowKey is installed or enabled):
 * it does nothing but listen until its frame is on an enabled site (content/frameState.js).
 *
 * Content scripts cannot be ES modules: the build bundles this file and everything it imports
 * into one classic script (scripts/bundle.mjs), so no file of the extension needs to be
 * reachable from a page (web_accessible_resources would let any site tell LowKey is installed).
 */
import { startController } from './content/controller.js';
import { followFrameState } from './content/frameState.js';
import { startContent } from './content/guard.js';

const api = globalThis.browser ?? globalThis.chrome;

startContent({
  global: globalThis,
  win: window,
  api,
  followState: followFrameState,
  makeController: (shared) => startController({ api, ...shared }),
});
