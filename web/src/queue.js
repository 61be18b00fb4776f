// queue.js — the queue page: review items in the API's order (stat first,
// then most uncertain, then oldest), filters, paging, "Claim next" (key n),
// refreshed every 15 s while on screen.

import * as api from './api.js';
import { h, mount } from './dom.js';
import { age, num, words } from './format.js';

const PAGE_SIZE = 50;
const REFRESH_MS = 15000;

// Kept across visits, so coming back from a case shows the same slice of the queue.
const filters = { state: 'pending', reason: '', model: '', scanner: '', priority: '' };
let offset = 0;
// Values seen in any answer, offered as suggestions in the filter fields.
const seen = { reason: new Set(), model: new Set(), scanner: new Set() };

export function queuePage(root, ctx) {
  let timer = null;
  let loading = false;
  let left = false;

  const count = h('span', { id: 'queue-count', dataset: { count: '' } }, '…');
  const body = h('tbody');
  const claimButton = h('button', { type: 'button', id: 'claim-next', class: 'primary', onclick: claimNext }, 'Claim next ', h('kbd', {}, 'n'));
  const prev = h('button', { type: 'button', onclick: () => page(-1) }, '← Previous');
  const next = h('button', { type: 'button', onclick: () => page(1) }, 'Next →');
  const lists = Object.fromEntries(Object.keys(seen).map((k) => [k, h('datalist', { id: `seen-${k}` })]));

  function field(key, label, control) {
    control.id = `filter-${key}`;
    control.name = key;
    control.value = filters[key];
    control.addEventListener('change', () => {
      filters[key] = control.value.trim();
      offset = 0;
      load();
    });
    return h('label', {}, label, control);
  }
  const select = (...options) => h('select', {}, options.map(([value, text]) => h('option', { value }, text)));
  const text = (key) => h('input', { type: 'search', list: `seen-${key}`, placeholder: 'any' });

  mount(
    root,
    h(
      'section',
      { class: 'queue' },
      h('div', { class: 'toolbar' }, h('h1', {}, 'Review queue'), count, h('span', { class: 'spacer' }),
        h('button', { type: 'button', id: 'refresh', onclick: () => load() }, 'Refresh'), claimButton),
      h(
        'form',
        { class: 'filters', onsubmit: (e) => e.preventDefault() },
        field('state', 'State', select(['pending', 'pending'], ['claimed', 'claimed'], ['decided', 'decided'], ['', 'any'])),
        field('priority', 'Priority', select(['', 'any'], ['stat', 'stat'], ['routine', 'routine'])),
        field('reason', 'Reason', text('reason')),
        field('model', 'Model', text('model')),
        field('scanner', 'Scanner', text('scanner')),
        Object.values(lists),
      ),
      h(
        'table',
        { id: 'queue-table', class: 'grid' },
        h('thead', {}, h('tr', {}, ['Priority', 'Uncertainty', 'Reasons', 'Model', 'Scanner', 'Age', 'State', 'Study'].map((c) => h('th', {}, c)))),
        body,
      ),
      h('div', { class: 'pager' }, prev, next),
    ),
  );

  function row(item) {
    const state = item.state === 'claimed' ? `claimed by ${item.claimed_by}` : item.decision ? `${item.state}: ${item.decision}` : item.state;
    return h(
      'tr',
      { dataset: { id: item.id, state: item.state }, class: `clickable ${item.priority}`, onclick: () => ctx.go(`#/case/${item.id}`) },
      h('td', {}, h('span', { class: `badge ${item.priority}` }, item.priority)),
      h('td', { class: 'num' }, num(item.uncertainty)),
      h('td', {}, item.reasons.map((r) => h('span', { class: 'reason', title: r.metric ?? '' }, words(r.code)))),
      h('td', {}, item.model),
      h('td', {}, item.scanner ?? '–'),
      h('td', { title: item.created_at }, age(item.created_at)),
      h('td', {}, state, item.escalated ? h('span', { class: 'badge escalated' }, 'escalated') : null),
      h('td', { class: 'key', title: item.study_key }, h('a', { href: `#/case/${item.id}` }, item.study_key)),
    );
  }

  async function load() {
    if (loading || left) return;
    loading = true;
    try {
      const items = await api.items({ ...filters, limit: PAGE_SIZE, offset });
      if (left) return;
      for (const item of items) {
        item.reasons.forEach((r) => seen.reason.add(r.code));
        seen.model.add(item.model);
        if (item.scanner) seen.scanner.add(item.scanner);
      }
      for (const [key, list] of Object.entries(lists)) mount(list, [...seen[key]].sort().map((v) => h('option', { value: v })));
      const full = items.length === PAGE_SIZE;
      const what = filters.state || 'items';
      count.dataset.count = String(items.length);
      count.textContent = `${items.length}${full ? '+' : ''} ${what}${offset ? ` (from #${offset + 1})` : ''}`;
      mount(body, items.length ? items.map(row) : h('tr', {}, h('td', { colspan: 8, class: 'muted' }, `No ${what} items.`)));
      prev.disabled = offset === 0;
      next.disabled = !full;
    } catch (e) {
      ctx.fail(e);
    } finally {
      loading = false;
    }
  }

  function page(direction) {
    offset = Math.max(0, offset + direction * PAGE_SIZE);
    load();
  }

  async function claimNext() {
    claimButton.disabled = true;
    try {
      const kase = await api.claimNext();
      if (kase) ctx.openCase(kase);
      else {
        ctx.notify('Nothing is pending.');
        load();
      }
    } catch (e) {
      ctx.fail(e);
    } finally {
      claimButton.disabled = false;
    }
  }

  load();
  timer = setInterval(load, REFRESH_MS);
  return {
    leave() {
      left = true;
      clearInterval(timer);
    },
    onKey(e) {
      if (e.key === 'n') claimNext();
    },
  };
}
