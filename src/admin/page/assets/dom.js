// Building the page: every element is made here, and every string from
// outside (domain names, remote replies, headers) becomes a text node.
// Nothing in the page is ever parsed from a string as HTML.

/** An element: `attrs` are attributes (`on…` functions become listeners),
 *  `children` are nodes or strings (strings become text nodes). */
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      node.addEventListener(name.slice(2), value);
    } else {
      node.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(node, children);
  return node;
}

/** Appends nodes and strings (as text), skipping null and flattening arrays. */
export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Replaces what `node` holds. */
export function show(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

/** A coloured state badge; `state` selects the colour. */
export function badge(state, text) {
  return el('span', { class: `badge badge-${String(state).replace(/[^a-z_]/g, '')}` }, text || state);
}

/** Copies `text` to the clipboard: the Clipboard API where the page is a
 *  secure context (https, or loopback), a hidden text area otherwise. */
export async function copy(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try { await navigator.clipboard.writeText(text); return true; } catch (_) { /* fall back */ }
  }
  const area = el('textarea', { class: 'offscreen', readonly: true });
  area.value = text;
  document.body.append(area);
  area.select();
  let ok = false;
  try { ok = document.execCommand('copy'); } catch (_) { ok = false; }
  area.remove();
  return ok;
}

/** A "Copy" button for `text()`, saying "Copied" for a moment. */
export function copyButton(text, label = 'Copy', title) {
  const button = el('button', { type: 'button', class: 'copy', title: title || 'Copy to the clipboard' }, label);
  button.addEventListener('click', async () => {
    const ok = await copy(typeof text === 'function' ? text() : text);
    button.textContent = ok ? 'Copied' : 'Select and copy';
    setTimeout(() => { button.textContent = label; }, 1500);
  });
  return button;
}

/** `2026-11-30 14:05 UTC` from ms since the epoch (`14:05:09` with `seconds`). */
export function time(ms, seconds = false) {
  if (ms === null || ms === undefined) return 'never';
  const d = new Date(ms);
  return d.toISOString().slice(0, seconds ? 19 : 16).replace('T', ' ') + ' UTC';
}

/** `in 3 h`, `5 min ago`, relative to now. */
export function relative(ms) {
  if (ms === null || ms === undefined) return '—';
  const diff = ms - Date.now();
  const abs = Math.abs(diff);
  const units = [[86400000, 'd'], [3600000, 'h'], [60000, 'min'], [1000, 's']];
  let text = 'now';
  for (const [size, unit] of units) {
    if (abs >= size) { text = `${Math.round(abs / size)} ${unit}`; break; }
  }
  if (text === 'now') return text;
  return diff > 0 ? `in ${text}` : `${text} ago`;
}

/** A one-line message under a form or a button. */
export function notice(kind, text) {
  return el('p', { class: kind, role: kind === 'error' ? 'alert' : 'status' }, text);
}

/** A table from a header row and rows of cells (nodes or strings). */
export function table(cls, header, rows) {
  return el('table', { class: cls },
    el('thead', {}, el('tr', {}, header.map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, rows.map((cells) => el('tr', {}, cells.map((c, i) => el('td', { 'data-label': header[i] }, c))))));
}

/** A failure's bounce class in words: `mailbox full (soft): …`. */
export function bounceText(b) {
  if (!b) return null;
  return el('div', { class: 'bounce' }, `${String(b.class).replace(/_/g, ' ')} (${b.hard ? 'hard' : 'soft'}): ${b.description}`);
}
