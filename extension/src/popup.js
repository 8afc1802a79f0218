/**
 * The popup (opened from the toolbar button's context menu, or as a page): the on/off toggle,
 * the preset in force and what it does to the face, this site with add/remove, the daemon's
 * status, and the last results (with what recognisers never attacked made of each) and a
 * before/after preview of the last photo. It reads storage itself and asks the background for
 * the daemon.
 */
import { explainError } from './lib/messages.js';
import { recognitionText } from './lib/report.js';
import { findSite, hostOf } from './lib/siteList.js';
import { presetInfo } from './shared/presets.js';
import { LOCAL, SESSION, api, getSites } from './shared/settings.js';
import { addSiteFromClick, hasPermission, removeSiteNow } from './shared/siteActions.js';

const $ = (id) => document.getElementById(id);

async function currentTab() {
  const id = Number(new URLSearchParams(location.search).get('tab'));
  try {
    if (Number.isInteger(id) && id > 0) return await api.tabs.get(id);
    const [tab] = await api.tabs.query({ active: true, currentWindow: true });
    return tab;
  } catch {
    return undefined;
  }
}

function renderToggle(paused) {
  const button = $('toggle');
  button.setAttribute('aria-pressed', String(!paused));
  button.textContent = paused ? 'Paused: click to protect photos again' : 'Protection is on: click to pause';
  $('logo').src = paused ? 'icons/paused-32.png' : 'icons/on-32.png';
}

function renderPreset(stored) {
  const preset = presetInfo(stored);
  $('preset-name').textContent = preset.name;
  $('preset-label').textContent = preset.label;
  $('preset-label').className = preset.protects ? '' : 'bad';
}

async function renderSite(tab) {
  const host = hostOf(tab?.url ?? '');
  const button = $('site-button');
  if (!host || tab.url.startsWith(api.runtime.getURL(''))) {
    $('site-host').textContent = tab?.url ? 'not a web page' : 'unknown';
    $('site-state').textContent = '';
    $('site-note').textContent = tab?.url ? '' : 'LowKey cannot see this tab\'s address. Add sites in Settings and sites….';
    button.hidden = true;
    return;
  }
  const site = findSite(await getSites(), host);
  $('site-host').textContent = host;
  $('site-state').textContent = site ? '— photos are protected here' : '— not protected here';
  $('site-state').className = site ? 'good' : '';
  button.hidden = false;
  button.textContent = site ? `Stop protecting ${site}` : `Protect photos on ${host.replace(/^www\./, '')}`;
  button.onclick = () => {
    const done = site ? removeSiteNow(site).then(() => ({})) : addSiteFromClick(host);
    done.then(({ granted, added }) => {
      // content.js runs in every tab and follows the list: no reload needed.
      $('site-note').textContent = added === undefined ? 'Removed: photos you choose here go as they are.'
        : granted ? 'Added: photos you choose here are protected from now on.'
          : 'Added, but the browser did not allow LowKey on it: grant it in Settings and sites….';
      renderSite(tab);
    });
  };
  if (site && !(await hasPermission(site))) {
    $('site-note').textContent = 'LowKey lacks the browser\'s permission for this site: grant it in Settings and sites….';
  }
}

function fact(list, label, value) {
  const dt = document.createElement('dt');
  dt.textContent = label;
  const dd = document.createElement('dd');
  dd.textContent = value;
  list.append(dt, dd);
}

async function renderDaemon() {
  const answer = await api.runtime.sendMessage({ type: 'daemon' });
  const list = $('daemon');
  list.replaceChildren();
  if (!answer || answer.error) {
    const code = answer?.error?.code ?? 'internal';
    fact(list, 'State', answer?.error?.message ?? explainError(code));
    if (code === 'host-missing') fact(list, 'Fix', 'install LowKey (its installer registers the native host)');
    return;
  }
  const { hello, status } = answer;
  const daemon = status.daemon ?? hello.daemon;
  fact(list, 'State', `${daemon.state}${daemon.message && daemon.message !== daemon.state ? `: ${daemon.message}` : ''}`);
  const s = status.status;
  if (s) {
    fact(list, 'Ensemble', (s.ensemble ?? []).join(', ') || '—');
    // What a request without a preset gets (other tools); this extension sends its own.
    fact(list, 'Daemon default', s.preset ?? '—');
    fact(list, 'Device', (s.devices ?? []).join(', ') || '—');
    if (s.judges?.length) fact(list, 'Checked by', `${s.judges.join(', ')} (never attacked)`);
    else if (s.judge) fact(list, 'Checked by', `${s.judge} (not attacked)`);
    if (s.queue) fact(list, 'Queue', `${s.queue.running} running, ${s.queue.queued} waiting`);
    if (s.paused) fact(list, 'Paused', 'yes, on this computer');
    fact(list, 'Version', s.version ?? daemon.version ?? '—');
  }
  fact(list, 'Native host', `${hello.version} (protocol ${hello.protocol})`);
}

function judgeText(judge) {
  if (!judge || judge.verdict === 'unknown') return 'not checked by a model that was not attacked';
  const distance = judge.distance === null ? 'face not found after' : `distance ${judge.distance.toFixed(2)}`;
  const verdict = {
    protected: 'no longer recognised',
    partly: `${judge.moved} of ${judge.checked} faces no longer recognised`,
    'not-protected': 'still recognised',
  }[judge.verdict];
  return `dlib (not attacked): ${verdict} (${distance}, same person below ${judge.threshold})`;
}

function renderResults(results, preview) {
  const list = $('results');
  list.replaceChildren();
  for (const r of results) {
    const li = document.createElement('li');
    const when = new Date(r.time).toLocaleTimeString();
    if (r.status === 'no-face') {
      li.textContent = `${r.name} — no face found, uploaded as it is (${when})`;
    } else {
      const seconds = r.seconds === null ? '' : `, ${r.seconds.toFixed(1)} s`;
      const preset = r.preset ? `, ${r.preset}` : '';
      li.textContent = `${r.name} — ${r.faces} face${r.faces === 1 ? '' : 's'}${seconds}${preset} (${when}${r.site ? `, ${r.site}` : ''}). `;
      const judge = document.createElement('span');
      // Recognisers never attacked, as the daemon now reports them; an older daemon: dlib's check.
      const recognition = recognitionText(r.recognition);
      if (recognition) {
        judge.textContent = recognition;
        judge.className = r.recognition.recognisedBy.length ? 'bad' : 'good';
      } else {
        judge.textContent = judgeText(r.judge);
        judge.className = r.judge?.verdict === 'protected' ? 'good' : r.judge?.verdict === 'not-protected' ? 'bad' : '';
      }
      li.append(judge);
    }
    list.append(li);
  }
  $('no-results').hidden = results.length > 0;
  $('clear').hidden = results.length === 0;
  const show = Boolean(preview?.before && preview?.after);
  $('preview').hidden = !show;
  $('preview-name').hidden = !show;
  if (show) {
    $('preview-name').textContent = `${preview.name}, before and after (${new Date(preview.time).toLocaleTimeString()})`;
    $('before').src = preview.before;
    $('after').src = preview.after;
  }
}

/** What a toggle did to the daemon, for people (setPaused's answer). */
function toggleNote(answer) {
  if (!answer) return 'LowKey did not answer.';
  if (answer.daemon === 'told') return answer.paused ? 'The daemon is paused too.' : 'The daemon protects photos again.';
  if (answer.daemon === 'absent') return 'The daemon is not running; LowKey remembers your choice.';
  const why = typeof answer.error === 'string' ? answer.error : answer.error?.message;
  return `The daemon could not be told: ${why ?? 'unknown error'}`;
}

async function renderStored() {
  const [stored, session] = await Promise.all([
    api.storage.local.get([LOCAL.paused, LOCAL.results, LOCAL.preset]), api.storage.session.get(SESSION.preview)]);
  renderToggle(Boolean(stored[LOCAL.paused]));
  renderPreset(stored[LOCAL.preset]);
  renderResults(Array.isArray(stored[LOCAL.results]) ? stored[LOCAL.results] : [], session[SESSION.preview]);
}

async function main() {
  const tab = await currentTab();
  $('toggle').addEventListener('click', async () => {
    $('toggle-note').textContent = '';
    const answer = await api.runtime.sendMessage({ type: 'toggle' });
    $('toggle-note').textContent = toggleNote(answer);
    $('toggle-note').dataset.daemon = answer?.daemon ?? 'failed';
  });
  $('clear').addEventListener('click', () => Promise.all([
    api.storage.local.remove([LOCAL.results, LOCAL.preview]), api.storage.session.remove(SESSION.preview)]));
  api.storage.onChanged.addListener((changes, area) => {
    if (area === 'session' && SESSION.preview in changes) renderStored();
    if (area !== 'local') return;
    renderStored();
    if (LOCAL.sites in changes) renderSite(tab);
  });
  await Promise.all([renderStored(), renderSite(tab), renderDaemon()]);
}

main().catch((err) => console.error('LowKey popup:', err));
