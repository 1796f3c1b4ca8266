// The suppression list: every suppressed address with why and until
// when, and a remove button (behind a confirmation) that lets mail to it
// through again.

import { api, seg } from './api.js';
import { el, notice, show, table } from './dom.js';

function when(ms) {
  return ms == null ? 'until removed' : new Date(ms).toISOString().replace('T', ' ').slice(0, 16) + ' UTC';
}

/** One row's cells, the last with its remove button and confirmation. */
function row(s, refresh) {
  const cell = el('span', {});
  const remove = async () => {
    await api('DELETE', `/api/suppressions/${seg(s.address)}?scope=${seg(s.scope)}`);
    await refresh(`${s.address} removed: mail to it is accepted again.`);
  };
  const ask = () => show(cell,
    el('button', { type: 'button', class: 'danger', 'data-confirm': s.address, onclick: remove }, 'Remove'),
    ' ',
    el('button', { type: 'button', class: 'quiet', onclick: idle }, 'Keep'));
  const idle = () => show(cell, el('button', { type: 'button', class: 'danger-outline', 'data-remove': s.address, onclick: ask }, 'Remove…'));
  idle();
  const why = s.reply ? `${s.reason} (${s.source}: ${s.reply})` : `${s.reason} (${s.source})`;
  return [el('code', {}, s.address), s.scope, String(s.class).replace(/_/g, ' '), when(s.since_ms), when(s.until_ms), why, cell];
}

/** `#/suppressions`. */
export async function suppressionsPage(view, message) {
  const refresh = (note) => suppressionsPage(view, note);
  const list = await api('GET', '/api/suppressions');
  const items = list.suppressions;
  show(view,
    el('h1', {}, 'Suppressions'),
    el('p', {}, 'Addresses that hard-bounced (the address does not exist, the mailbox is disabled, or was full too often). Submissions to them are refused until the suppression ends or is removed here (the same as ', el('code', {}, 'herald suppressions remove'), ').'),
    message ? notice('ok', message) : null,
    items.length === 0
      ? el('p', { class: 'muted', id: 'no-suppressions' }, 'No suppressed addresses.')
      : el('div', { id: 'suppressions' }, table('domains', ['Address', 'Scope', 'Class', 'Since', 'Until', 'Why', ''], items.map((s) => row(s, refresh)))));
}
