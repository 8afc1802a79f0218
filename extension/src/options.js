/**
 * The options page: the preset photos are protected with (each offered with what it does to
 * the face, shared/presets.js), and the enabled sites, with add, remove, restore defaults, and
 * the browser's permission per site (granted from here when missing).
 */
import { matchPattern } from './lib/siteList.js';
import { PRESETS } from './shared/presets.js';
import { DEFAULTS, LOCAL, api, getPreset, getSites, setPreset, setSites } from './shared/settings.js';
import { addSiteFromClick, hasPermission, removeSiteNow } from './shared/siteActions.js';

const $ = (id) => document.getElementById(id);

async function render() {
  const sites = await getSites();
  const allowed = await Promise.all(sites.map(hasPermission));
  const items = sites.map((site, i) => {
    const li = document.createElement('li');
    const name = document.createElement('span');
    name.textContent = site;
    const actions = document.createElement('span');
    if (!allowed[i]) {
      const missing = document.createElement('span');
      missing.className = 'missing';
      missing.textContent = 'not allowed by the browser ';
      const grant = document.createElement('button');
      grant.type = 'button';
      grant.textContent = 'Allow';
      grant.addEventListener('click', () => {
        api.permissions.request({ origins: [matchPattern(site)] }).finally(render);
      });
      actions.append(missing, grant, ' ');
    }
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.textContent = 'Remove';
    remove.setAttribute('aria-label', `Remove ${site}`);
    remove.addEventListener('click', () => removeSiteNow(site));
    actions.append(remove);
    li.append(name, actions);
    return li;
  });
  $('sites').replaceChildren(...items);
}

async function renderPresets() {
  const chosen = await getPreset();
  const items = PRESETS.map((preset) => {
    const label = document.createElement('label');
    label.className = preset.protects ? 'preset' : 'preset weak';
    const radio = document.createElement('input');
    radio.type = 'radio';
    radio.name = 'preset';
    radio.value = preset.name;
    radio.checked = preset.name === chosen;
    radio.addEventListener('change', () => {
      setPreset(preset.name).then(() => {
        $('preset-note').textContent = `Photos you upload from now on get "${preset.name}".`;
      });
    });
    const title = document.createElement('strong');
    title.textContent = `${preset.title} `;
    const name = document.createElement('code');
    name.textContent = preset.name;
    const what = document.createElement('span');
    what.className = 'what';
    what.textContent = preset.label;
    label.append(radio, ' ', title, name, what);
    return label;
  });
  $('presets').replaceChildren(...items);
}

$('add-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const input = $('add-input');
  addSiteFromClick(input.value).then(({ site, added, granted }) => {
    $('add-note').textContent = !site ? 'That is not a site: try example.com'
      : !added ? `${site} is already on the list`
        : granted ? `${site} added` : `${site} added, but the browser did not allow LowKey on it`;
    if (site) input.value = '';
  });
});

$('reset').addEventListener('click', () => setSites([...DEFAULTS]));

api.storage.onChanged.addListener((changes, area) => {
  if (area === 'local' && LOCAL.sites in changes) render();
  if (area === 'local' && LOCAL.preset in changes) renderPresets();
});
renderPresets();
render();
