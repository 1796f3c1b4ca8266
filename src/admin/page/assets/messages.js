// Messages: find one by relay id, Message-ID, recipient or the billing
// app's reference; per recipient its status and every attempt; the
// identity it was sent as; retry and drop while it is queued.

import { api, seg } from './api.js';
import { badge, bounceText, el, notice, show, table, time } from './dom.js';

/** `#/messages` (the queue) or `#/messages/<query>` (a search). */
export async function messagesPage(view, query, flash) {
  const input = el('input', { id: 'message-query', type: 'search', value: query || '', placeholder: 'relay id, Message-ID, recipient or reference', autocomplete: 'off', spellcheck: 'false', 'aria-label': 'Find messages' });
  const form = el('form', { id: 'find-message', class: 'inline' }, input, el('button', { type: 'submit', id: 'find-button' }, 'Find'));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const q = input.value.trim();
    const target = q ? `#/messages/${seg(q)}` : '#/messages';
    if (location.hash === target) messagesPage(view, q); else location.hash = target;
  });
  const results = el('div', { id: 'message-results' }, notice('muted', 'Loading…'));
  show(view, el('h1', {}, 'Messages'), el('section', { class: 'card' }, form), flash ? el('p', { class: 'ok flash', id: 'flash', role: 'status' }, flash) : null, results);
  try {
    if (query) {
      const found = await api('GET', `/api/messages?q=${seg(query)}`);
      const head = found.messages.length
        ? `${found.messages.length} message${found.messages.length === 1 ? '' : 's'} for “${found.query}”${found.truncated ? ' (the newest; there are more)' : ''}`
        : `No message has the relay id, Message-ID, recipient or reference “${found.query}” (finished messages are kept for queue.retire_after).`;
      show(results, el('p', { class: 'muted', id: 'result-count' }, head), found.messages.map((m) => messageCard(view, m, query)));
    } else {
      const queue = await api('GET', '/api/queue/messages?limit=20');
      const head = queue.total
        ? `${queue.total} message${queue.total === 1 ? '' : 's'} in the queue${queue.total > queue.messages.length ? `; the newest ${queue.messages.length}` : ''}:`
        : 'The queue is empty. Search above to find a delivered or failed message.';
      show(results, el('p', { class: 'muted', id: 'result-count' }, head), queue.messages.map((m) => messageCard(view, m, query)));
    }
  } catch (e) {
    show(results, notice('error', e.message));
  }
}

function fact(name, value) {
  if (value === null || value === undefined || value === '') return null;
  return [el('dt', {}, name), el('dd', {}, value)];
}

/** The identity the message was sent as (known from its first attempt). */
function identity(m) {
  if (!m.signed_domain) return 'decided at the first delivery attempt';
  return `d=${m.signed_domain} s=${m.selector}, envelope from ${m.envelope_from || '<>'} (${m.reason})`;
}

function attemptsTable(r) {
  if (!r.attempts.length) return el('p', { class: 'muted' }, 'No attempt yet.');
  const rows = r.attempts.map((a) => [time(a.at_ms, true), a.host || '—', badge(a.outcome), [el('span', { class: 'reply' }, a.reply), bounceText(a.bounce)]]);
  return table('attempts', ['Time', 'Remote host', 'Outcome', 'Reply'], rows);
}

function messageCard(view, m, query) {
  const status = el('div', { class: 'form-status' });
  // Done: the list again, as it is now, with what happened on top.
  const act = async (method, path, done) => {
    const hash = location.hash;
    try {
      await api(method, path);
      if (location.hash === hash) await messagesPage(view, query, `${m.id}: ${done}`);
    } catch (e) {
      show(status, notice('error', e.message));
    }
  };
  const actions = el('div', { class: 'actions' });
  if (m.state === 'queued') {
    const idle = () => show(actions,
      el('button', { type: 'button', class: 'retry', onclick: () => act('POST', `/api/queue/${seg(m.id)}/retry`, 'Due now: the next delivery round takes it.') }, 'Retry now'),
      el('button', { type: 'button', class: 'danger-outline drop', onclick: ask }, 'Drop…'));
    const ask = () => show(actions,
      el('span', { class: 'warning' }, 'Drop it? Every pending recipient fails; no bounce is sent.'),
      el('button', { type: 'button', class: 'danger confirm-drop', onclick: () => act('DELETE', `/api/queue/${seg(m.id)}`, 'Dropped.') }, 'Drop for good'),
      el('button', { type: 'button', class: 'quiet', onclick: idle }, 'Cancel'));
    idle();
  }
  return el('article', { class: 'card message', 'data-id': m.id },
    el('h2', {}, el('code', {}, m.id), ' ', badge(m.state), m.in_flight ? badge('in_flight', 'being delivered') : null, m.is_dsn ? badge('dsn', 'bounce notice') : null),
    el('dl', { class: 'facts' },
      fact('Received', time(m.received_ms)),
      fact('From', m.from_address),
      fact('Envelope from', m.mail_from || '<>'),
      fact('Message-ID', m.message_id),
      fact('Reference', m.reference),
      fact('Sent as', identity(m)),
      fact('Next round', m.due_ms ? time(m.due_ms) : null),
      fact('Finished', m.finished_ms ? time(m.finished_ms) : null)),
    m.recipients.map((r) => el('section', { class: 'recipient' },
      el('h3', {}, el('span', { class: 'address' }, r.address), ' ', badge(r.status)),
      attemptsTable(r))),
    actions, status);
}
