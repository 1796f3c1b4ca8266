// Customer domains: the list with state badges, adding one, and a domain's
// page: its three records with copy buttons, the text for the customer,
// "Check now" with herald's named mistakes, its history, and removal.

import { api, seg } from './api.js';
import { LANGUAGES, customerText } from './customer.js';
import { badge, copyButton, el, notice, relative, show, table, time } from './dom.js';

/** Who the domain's mail is signed as, in the CLI's words. */
function signsAs(d) {
  return d.signs_as_customer ? `the customer (d=${d.domain} s=${d.selector})` : 'the relay';
}

function domainLink(name) {
  return el('a', { href: `#/domains/${seg(name)}`, class: 'domain-link' }, name);
}

/** `#/domains`: the add form and every domain. */
export async function domainList(view) {
  const list = await api('GET', '/api/domains');
  const input = el('input', { id: 'new-domain', type: 'text', placeholder: 'customer.nl', autocomplete: 'off', spellcheck: 'false', required: true, 'aria-label': 'Customer domain' });
  const status = el('div', { class: 'form-status' });
  const form = el('form', { id: 'add-domain', class: 'inline' }, input, el('button', { type: 'submit', id: 'add-domain-button' }, 'Add domain'));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    show(status, notice('muted', 'Adding… (making two DKIM keys)'));
    try {
      const d = await api('POST', '/api/domains', { domain: input.value.trim() });
      location.hash = `#/domains/${seg(d.domain)}`;
    } catch (e) {
      show(status, notice('error', e.message));
    }
  });
  const rows = list.domains.map((d) => [domainLink(d.domain), badge(d.state), signsAs(d), relative(d.next_check_ms)]);
  show(view,
    el('h1', {}, 'Domains'),
    el('section', { class: 'card' }, el('h2', {}, 'Add a customer domain'), form, status),
    rows.length
      ? table('domains', ['Domain', 'State', 'Signs as', 'Next check'], rows)
      : el('p', { class: 'muted', id: 'no-domains' }, 'No customer domains yet. Add one above: herald answers with the three DNS records to give the customer.'));
}

/** The three records, each value with a copy button. */
function recordsTable(d) {
  const cell = (text) => el('span', { class: 'copyable' }, el('code', {}, text), copyButton(text));
  const rows = d.customer_records.map((r) => [cell(r.host), r.type, cell(r.value)]);
  return table('records', ['Host', 'Type', 'Value'], rows);
}

/** The text for the customer, with a language switch and a copy button. */
function customerBlock(d) {
  const pre = el('pre', { class: 'customer-text', id: 'customer-text' });
  let lang = 'en';
  const buttons = LANGUAGES.map(([code, name]) => el('button', { type: 'button', class: 'tab', 'data-lang': code, id: `lang-${code}` }, name));
  const render = () => {
    pre.textContent = customerText(d, lang);
    for (const b of buttons) b.classList.toggle('current', b.dataset.lang === lang);
  };
  for (const b of buttons) b.addEventListener('click', () => { lang = b.dataset.lang; render(); });
  render();
  return el('section', { class: 'card' },
    el('h2', {}, 'Text for the customer'),
    el('div', { class: 'actions' }, buttons, copyButton(() => pre.textContent, 'Copy text')),
    pre);
}

/** One ✓/✗ line per record, as `herald domain verify` prints them. */
function checkLines(v) {
  const lines = v.records.map((r) => el('li', { class: r.ok ? 'ok' : 'wrong' },
    el('span', { class: 'mark', 'aria-hidden': 'true' }, r.ok ? '✓' : '✗'), ' ',
    el('code', {}, r.host), ' — ', el('span', { class: 'check-message' }, r.message)));
  const verdicts = {
    verified: `${v.domain} is verified: its mail is signed as ${v.domain}.`,
    not_verified: `${v.domain} is not verified (state ${v.state}): fix the records marked ✗, then check again.`,
    temporary: `${v.domain} could not be checked completely because of a temporary DNS failure, so its state stays ${v.state}; try again later.`,
  };
  return [el('ul', { class: 'checks', id: 'check-lines' }, lines), el('p', { class: `verdict verdict-${v.overall}`, id: 'verdict' }, verdicts[v.overall] || v.overall)];
}

function historyTable(d) {
  if (!d.history.length) return el('p', { class: 'muted' }, 'No state changes yet.');
  const rows = d.history.slice().reverse().map((t) => [time(t.at_ms), el('span', {}, badge(t.from), ' → ', badge(t.to)), t.reason]);
  return table('history', ['When', 'Change', 'Why'], rows);
}

function operatorTable(d) {
  const rows = d.operator_records.map((r) => [el('code', {}, r.name), r.type, el('code', { class: 'long' }, r.value)]);
  return el('details', { class: 'card' },
    el('summary', {}, 'Records in the operator\'s zone for this domain'),
    el('p', { class: 'muted' }, 'These belong in the operator\'s zone, not the customer\'s (see Operator zone).'),
    table('operator', ['Name', 'Type', 'Value'], rows));
}

/** Remove, behind a confirmation. */
function removeBlock(view, d) {
  const box = el('div', { class: 'actions' });
  const ask = () => show(box,
    el('span', { class: 'warning' }, `Remove ${d.domain}? Its DKIM keys are deleted and its mail is sent as the relay from then on.`),
    el('button', { type: 'button', class: 'danger', id: 'confirm-remove', onclick: remove }, 'Remove for good'),
    el('button', { type: 'button', class: 'quiet', onclick: idle }, 'Cancel'));
  const idle = () => show(box, el('button', { type: 'button', class: 'danger-outline', id: 'remove-domain', onclick: ask }, 'Remove domain…'));
  async function remove() {
    try {
      await api('DELETE', `/api/domains/${seg(d.domain)}`);
      location.hash = '#/domains';
    } catch (e) {
      show(box, notice('error', e.message));
    }
  }
  idle();
  return el('section', { class: 'card' }, el('h2', {}, 'Remove'), box);
}

/** `#/domains/<name>`: one domain. */
export async function domainPage(view, name) {
  const d = await api('GET', `/api/domains/${seg(name)}`);
  const results = el('div', { id: 'check-results' });
  const check = el('button', { type: 'button', id: 'check-now' }, 'Check now');
  check.addEventListener('click', async () => {
    check.disabled = true;
    show(results, notice('muted', 'Checking the three records…'));
    try {
      const v = await api('POST', `/api/domains/${seg(d.domain)}/verify`);
      show(results, checkLines(v));
      const fresh = await api('GET', `/api/domains/${seg(d.domain)}`);
      show(stateLine, stateFacts(fresh));
      show(history, historyTable(fresh));
    } catch (e) {
      show(results, notice('error', e.message));
    } finally {
      check.disabled = false;
    }
  });
  const stateLine = el('div', { id: 'domain-facts' }, stateFacts(d));
  const history = el('div', { id: 'history' }, historyTable(d));
  show(view,
    el('p', { class: 'crumbs' }, el('a', { href: '#/domains' }, '← Domains')),
    el('h1', { id: 'domain-name' }, d.domain),
    stateLine,
    el('section', { class: 'card' },
      el('h2', {}, 'Records for the customer'),
      el('p', {}, 'Three CNAME records in the zone of ', el('strong', {}, d.domain), '. Many DNS providers add the domain by themselves: there, enter only ',
        d.customer_records.map((r, i) => [i ? ', ' : '', el('code', {}, r.label)]), ' as the host.'),
      recordsTable(d)),
    el('section', { class: 'card' }, el('h2', {}, 'Are the records right?'), el('div', { class: 'actions' }, check), results),
    customerBlock(d),
    el('section', { class: 'card' }, el('h2', {}, 'History'), history),
    operatorTable(d),
    removeBlock(view, d));
}

function stateFacts(d) {
  return el('dl', { class: 'facts' },
    el('dt', {}, 'State'), el('dd', {}, badge(d.state), ` since ${time(d.state_since_ms)}`),
    el('dt', {}, 'Signs as'), el('dd', { id: 'signs-as' }, signsAs(d)),
    el('dt', {}, 'Tenant'), el('dd', {}, d.tenant),
    el('dt', {}, 'Last check'), el('dd', {}, time(d.last_check_ms)),
    el('dt', {}, 'Next check'), el('dd', {}, `${relative(d.next_check_ms)} (${time(d.next_check_ms)})`));
}
