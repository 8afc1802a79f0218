import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  DEFAULT_SITES, addSite, findSite, hostMatches, matchPattern, matchPatterns, normaliseSite,
  parseSiteList, removeSite,
} from '../src/lib/siteList.js';

test('the default list holds the major sites, normalised and unique', () => {
  for (const site of ['facebook.com', 'instagram.com', 'x.com', 'twitter.com', 'linkedin.com',
    'reddit.com', 'tiktok.com', 'pinterest.com', 'flickr.com', 'tumblr.com', 'vk.com', 'bsky.app',
    'mastodon.social', 'threads.net', 'web.whatsapp.com', 'discord.com', 'web.telegram.org']) {
    assert.ok(DEFAULT_SITES.includes(site), site);
  }
  assert.deepEqual(parseSiteList([...DEFAULT_SITES]), [...DEFAULT_SITES]);
});

test('normalise: case, scheme, path, port, www, wildcard, trailing dot', () => {
  const cases = {
    'Facebook.com': 'facebook.com',
    ' https://www.Facebook.com/me/photos?x=1 ': 'facebook.com',
    'http://web.whatsapp.com:443/': 'web.whatsapp.com',
    '*.reddit.com': 'reddit.com',
    'instagram.com.': 'instagram.com',
    'localhost': 'localhost',
    '127.0.0.1': '127.0.0.1',
    'http://127.0.0.1:8080/upload': '127.0.0.1',
    'bücher.example': 'xn--bcher-kva.example',
    '[::1]': '[::1]',
  };
  for (const [input, expected] of Object.entries(cases)) assert.equal(normaliseSite(input), expected, input);
  for (const bad of ['', '   ', 'com', 'ftp://facebook.com', 'file:///etc/passwd', 'face book.com',
    '-bad-.com', '999.1.1.1', null, 42, 'javascript:alert(1)']) {
    assert.equal(normaliseSite(bad), null, String(bad));
  }
});

test('matching is exact by labels: the site and its subdomains only', () => {
  const yes = [['facebook.com', 'facebook.com'], ['www.facebook.com', 'facebook.com'],
    ['m.facebook.com', 'facebook.com'], ['a.b.facebook.com', 'facebook.com'],
    ['FACEBOOK.COM', 'facebook.com'], ['facebook.com.', 'facebook.com']];
  const no = [['facebook.com.evil.net', 'facebook.com'], ['notfacebook.com', 'facebook.com'],
    ['evilfacebook.com', 'facebook.com'], ['facebook.co', 'facebook.com'],
    ['whatsapp.com', 'web.whatsapp.com'], ['telegram.org', 'web.telegram.org'], ['', 'x.com']];
  for (const [host, site] of yes) assert.equal(hostMatches(host, site), true, `${host} ${site}`);
  for (const [host, site] of no) assert.equal(hostMatches(host, site), false, `${host} ${site}`);
});

test('findSite takes URLs and picks the most specific site', () => {
  const sites = ['facebook.com', 'web.whatsapp.com', 'whatsapp.com'];
  assert.equal(findSite(sites, 'https://m.facebook.com/photos'), 'facebook.com');
  assert.equal(findSite(sites, 'https://web.whatsapp.com/'), 'web.whatsapp.com');
  assert.equal(findSite(sites, 'https://facebook.com.evil.net/'), null);
  assert.equal(findSite(sites, 'https://evil.net/?facebook.com'), null);
  assert.equal(findSite(sites, 'https://evil.net/facebook.com'), null);
  assert.equal(findSite(sites, 'https://facebook.com@evil.net/'), null);
  assert.equal(findSite(sites, 'chrome://extensions'), null);
  assert.equal(findSite(sites, 'not a url'), null);
});

test('add and remove', () => {
  let r = addSite(['x.com'], 'https://www.Example.org/a');
  assert.deepEqual(r, { sites: ['x.com', 'example.org'], site: 'example.org', added: true });
  r = addSite(r.sites, 'example.org');
  assert.equal(r.added, false);
  assert.equal(addSite(r.sites, 'not valid').site, null);
  const removed = removeSite(r.sites, 'WWW.EXAMPLE.ORG');
  assert.deepEqual(removed, { sites: ['x.com'], site: 'example.org', removed: true });
  assert.equal(removeSite(['x.com'], 'y.com').removed, false);
});

test('a stored list is cleaned; a missing one is the default', () => {
  assert.deepEqual(parseSiteList(undefined), [...DEFAULT_SITES]);
  assert.deepEqual(parseSiteList('x.com'), [...DEFAULT_SITES]);
  assert.deepEqual(parseSiteList(['X.com', 'x.com', 'junk junk', 7, 'www.x.com', 'y.org']), ['x.com', 'y.org']);
  assert.deepEqual(parseSiteList([]), []);
});

test('match patterns cover the site and its subdomains', () => {
  assert.equal(matchPattern('facebook.com'), '*://*.facebook.com/*');
  assert.equal(matchPattern('127.0.0.1'), '*://127.0.0.1/*');
  assert.equal(matchPattern('localhost'), '*://localhost/*');
  assert.deepEqual(matchPatterns(['a.com', 'b.org']), ['*://*.a.com/*', '*://*.b.org/*']);
});
