/**
 * The options page: the enabled sites, with add, remove, restore defaults, and the browser's
 * permission per site (granted from here when missing).
 */
import { matchPattern } from './lib/siteList.js';
import { DEFAULTS, LOCAL, api, getSites, setSites } from './shared/settings.js';
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
});
render();
