// Events: the latest entries of the relay's event log (`GET /api/events`),
// filtered by type and domain, kept up to date by asking for what came
// after the cursor every few seconds while the view is open.

import { api, seg } from './api.js';
import { badge, bounceText, el, notice, show, table, time } from './dom.js';

/** How far back the view starts, how many rows it keeps, how often it asks. */
const SINCE_MS = 7 * 24 * 3600 * 1000;
const KEEP = 200;
const POLL_MS = 2000;

const TYPES = [
  ['', 'All types'], ['message.*', 'Messages: all'], ['message.accepted', 'message.accepted'],
  ['message.delivered', 'message.delivered'], ['message.deferred', 'message.deferred'],
  ['message.failed,message.bounced', 'message.failed and bounced'], ['message.dropped', 'message.dropped'],
  ['domain.*', 'Domains: all state changes'],
];

/** The cursor of the first event at or after `ms` (ids are ms << 64). */
function cursorAt(ms) {
  return (BigInt(Math.max(0, Math.floor(ms))) << 64n).toString(16).padStart(32, '0');
}

/** The badge colour of an event type: its last part, e.g. `failed`. */
function typeBadge(type) {
  const last = String(type || '').split('.').pop();
  return badge(last, type || 'unknown');
}

function subject(e) {
  const parts = [];
  if (e.message) parts.push(el('a', { href: `#/messages/${seg(e.message)}` }, el('code', {}, e.message)));
  if (e.domain) parts.push(el('a', { href: `#/domains/${seg(e.domain)}` }, e.domain));
  const who = e.recipient || (e.recipients || []).join(', ');
  if (who) parts.push(el('span', {}, who));
  if (e.reference) parts.push(el('span', { class: 'muted' }, `ref ${e.reference}`));
  return el('div', { class: 'subject' }, parts.map((p) => el('div', {}, p)));
}

function details(e) {
  const lines = [];
  if (e.host) lines.push(e.host);
  if (e.reply) lines.push(el('span', { class: 'reply' }, e.reply));
  if (e.bounce) lines.push(bounceText(e.bounce));
  for (const r of e.reasons || []) lines.push(r);
  if (e.identity && !e.domain) lines.push(`identity ${e.identity}`);
  if (e.next_attempt_ms) lines.push(`next attempt ${time(e.next_attempt_ms, true)}`);
  return el('div', {}, lines.map((l) => el('div', {}, l)));
}

/** `#/events`. */
export async function eventsPage(view) {
  const type = el('select', { id: 'event-type', 'aria-label': 'Event type' }, TYPES.map(([v, t]) => el('option', { value: v }, t)));
  const domain = el('input', { id: 'event-domain', type: 'search', placeholder: 'domain, e.g. customer.nl', autocomplete: 'off', spellcheck: 'false', 'aria-label': 'Domain' });
  const state = el('p', { class: 'muted', id: 'events-state' });
  const body = el('div', { id: 'events' });
  show(view,
    el('h1', {}, 'Events'),
    el('form', { class: 'card inline filters', id: 'event-filter' }, type, domain, el('button', { type: 'submit' }, 'Filter')),
    state, body);

  let events = [];
  let cursor = cursorAt(Date.now() - SINCE_MS);
  let generation = 0;
  const query = () => {
    const q = [`after=${cursor}`, 'limit=1000'];
    if (type.value) q.push(`type=${seg(type.value)}`);
    if (domain.value.trim()) q.push(`domain=${seg(domain.value.trim())}`);
    return `/api/events?${q.join('&')}`;
  };
  const render = () => {
    show(body, events.length
      ? table('events', ['Time', 'Type', 'About', 'Details'], events.map((e) => [time(e.time_ms, true), typeBadge(e.type), subject(e), details(e)]))
      : el('p', { class: 'muted', id: 'no-events' }, 'No events of this kind in the last 7 days.'));
  };
  // Reads everything after the cursor (a page at a time); newest first on screen.
  const fetchNew = async (mine) => {
    for (let page = 0; page < 20; page++) {
      const answer = await api('GET', query());
      if (mine !== generation) return;
      cursor = answer.cursor;
      if (answer.events.length) events = answer.events.slice().reverse().concat(events).slice(0, KEEP);
      if (answer.events.length < 1000) break;
    }
  };
  const restart = async () => {
    generation += 1;
    const mine = generation;
    events = [];
    cursor = cursorAt(Date.now() - SINCE_MS);
    show(body, notice('muted', 'Loading…'));
    try {
      await fetchNew(mine);
      if (mine === generation) render();
    } catch (e) {
      show(body, notice('error', e.message));
    }
  };
  const poll = async () => {
    // Stop once the view is no longer on the page (another view, signed out).
    if (!body.isConnected) return;
    const mine = generation;
    try {
      const before = events[0] && events[0].id;
      await fetchNew(mine);
      if (mine === generation && events[0] && events[0].id !== before) render();
      state.textContent = `Live: checked for new events at ${new Date().toISOString().slice(11, 19)} UTC`;
    } catch (e) {
      state.textContent = `Not updating: ${e.message}`;
      if (e.status === 401) return;
    }
    setTimeout(poll, POLL_MS);
  };
  view.querySelector('#event-filter').addEventListener('submit', (event) => { event.preventDefault(); restart(); });
  type.addEventListener('change', restart);
  await restart();
  setTimeout(poll, POLL_MS);
}
