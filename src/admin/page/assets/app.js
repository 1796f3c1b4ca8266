// The admin page: sign-in, the navigation between views (`#/domains`,
// `#/domains/<name>`, `#/messages/<query>`, `#/events`, `#/suppressions`, `#/zone`), and the operator zone.

import { getText, loadSession, signIn, signOut, whenSignedOut } from './api.js';
import { copyButton, el, notice, show } from './dom.js';
import { domainList, domainPage } from './domains.js';
import { eventsPage } from './events.js';
import { messagesPage } from './messages.js';
import { suppressionsPage } from './suppressions.js';

const $ = (id) => document.getElementById(id);

function signedIn(yes) {
  $('sign-in-view').hidden = yes;
  $('nav').hidden = !yes;
  $('sign-out').hidden = !yes;
  $('view').hidden = !yes;
  if (!yes) {
    show($('view'));
    $('token').focus();
  }
}

async function zonePage(view) {
  show(view, el('h1', {}, 'Operator zone'), el('p', { class: 'muted' }, 'Loading…'));
  const text = await getText('/api/dns/zone');
  show(view,
    el('h1', {}, 'Operator zone'),
    el('p', {}, 'What the DNS of the operator\'s zone must hold: the relay\'s own DKIM key and, per customer domain, SPF, MX and two DKIM keys. Paste it into the zone at your DNS provider (the same text as ', el('code', {}, 'herald dns zone'), ').'),
    el('div', { class: 'actions' }, copyButton(text, 'Copy zone')),
    el('pre', { class: 'zone', id: 'zone-text' }, text));
}

/** Shows the view the address names. */
async function route() {
  // Each visit draws into a fresh box: a slow answer for a view left
  // meanwhile lands in a detached box and never over the current one.
  const view = el('div', { class: 'view' });
  show($('view'), view);
  const hash = location.hash.replace(/^#\/?/, '');
  const [section, ...rest] = hash.split('/');
  const arg = decodeURIComponent(rest.join('/'));
  for (const link of document.querySelectorAll('#nav a')) {
    link.classList.toggle('current', link.id === `nav-${section || 'domains'}`);
  }
  try {
    if (section === 'messages') await messagesPage(view, arg);
    else if (section === 'zone') await zonePage(view);
    else if (section === 'events') await eventsPage(view);
    else if (section === 'suppressions') await suppressionsPage(view);
    else if (section === 'domains' && arg) await domainPage(view, arg);
    else await domainList(view);
  } catch (e) {
    if (e.status !== 401) show(view, notice('error', e.message));
  }
}

async function start() {
  whenSignedOut(() => signedIn(false));
  $('sign-in-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    $('sign-in-error').textContent = '';
    try {
      await signIn($('token').value);
      $('token').value = '';
      signedIn(true);
      await route();
    } catch (e) {
      $('sign-in-error').textContent = e.message;
    }
  });
  $('sign-out').addEventListener('click', async () => {
    try { await signOut(); } finally { signedIn(false); }
  });
  window.addEventListener('hashchange', () => { if (!$('nav').hidden) route(); });
  let session = null;
  try { session = await loadSession(); } catch (e) { $('sign-in-error').textContent = e.message; }
  signedIn(Boolean(session));
  if (session) await route();
}

start();
