// Usage: what finished tasks used (GET /admin/usage), filtered by period, user and API key, grouped by
// user, key, model or day, as a table and as CSV; a bar chart of images per UTC day, drawn as inline SVG;
// and the quotas per user and key (GET/PUT/DELETE /admin/quotas/...), with what each used today and this month.

import { api } from '../api.js';
import { confirmDialog, field, h, replace, toast } from '../dom.js';
import * as format from '../format.js';

export const title = 'Usage';

const SVG = 'http://www.w3.org/2000/svg';
const LIMITS = [
  ['imagesPerDay', 'Images a day'], ['imagesPerMonth', 'Images a month'],
  ['workerSecondsPerDay', 'Worker seconds a day'], ['workerSecondsPerMonth', 'Worker seconds a month'],
];

export async function mount(view, { signal }) {
  const from = h('input', { name: 'from', type: 'date' });
  const to = h('input', { name: 'to', type: 'date' });
  const user = h('input', { name: 'user', autocomplete: 'off', spellcheck: 'false', placeholder: 'any' });
  const key = h('input', { name: 'key', autocomplete: 'off', spellcheck: 'false', placeholder: 'any key id' });
  const groupBy = h('select', { name: 'groupBy' }, ['user', 'key', 'model', 'day'].map((name) => h('option', { value: name, text: name })));
  const csv = h('a', { href: '#usage', class: 'button', download: 'sdbox-usage.csv', text: 'Download CSV' });
  const filters = h('form', { class: 'row', role: 'search', 'aria-label': 'Usage filters' },
    field('From (UTC day)', from), field('To (UTC day)', to), field('User', user), field('API key', key), field('Group by', groupBy),
    h('button', { type: 'submit', class: 'primary', text: 'Show' }), h('button', { type: 'reset', text: 'Clear' }), csv);

  const chart = h('div', { class: 'chart' });
  const head = h('tr');
  const rows = h('tbody');
  const totals = h('tfoot');
  const table = h('div', { class: 'table-wrap' }, h('table', { class: 'usage' }, h('thead', {}, head), rows, totals));

  /** The query of the filters, with `groupBy` as given. */
  const query = (grouping) => {
    const parameters = new URLSearchParams({ groupBy: grouping });
    if (from.value) parameters.set('from', `${from.value}T00:00:00Z`);
    if (to.value) parameters.set('to', new Date(Date.parse(`${to.value}T00:00:00Z`) + 86400000).toISOString());
    if (user.value.trim()) parameters.set('user', user.value.trim());
    if (key.value.trim()) parameters.set('key', key.value.trim());
    return `/admin/usage?${parameters}`;
  };
  const load = async () => {
    const [report, days] = await Promise.all([api(query(groupBy.value), { signal }), api(query('day'), { signal })]);
    replace(head, [report.groupBy, 'Tasks', 'Images', 'Pixels × steps', 'Worker time'].map((name, index) =>
      h('th', { scope: 'col', class: index > 0 ? 'num' : '', text: name })));
    const row = (item, cell = 'td') => h('tr', { dataset: { row: item.key } },
      h(cell, { class: 'mono', ...(cell === 'th' ? { scope: 'row' } : {}), text: item.key }),
      h('td', { class: 'num', text: String(item.tasks) }),
      h('td', { class: 'num', text: String(item.images) }),
      h('td', { class: 'num', text: item.pixelSteps.toLocaleString() }),
      h('td', { class: 'num', text: format.duration(item.workerSeconds) }));
    replace(rows, report.rows.length > 0
      ? report.rows.map((item) => row(item))
      : h('tr', {}, h('td', { colspan: 5, class: 'empty', text: 'No finished task in this period.' })));
    replace(totals, row(report.totals, 'th'));
    drawChart(chart, days.rows);
  };
  filters.addEventListener('submit', (event) => {
    event.preventDefault();
    load().catch((error) => toast(error.message, { error: true }));
  });
  filters.addEventListener('reset', () => setTimeout(() => load().catch((error) => toast(error.message, { error: true }))));
  csv.addEventListener('click', async (event) => {
    // The key travels in a header, so the file is fetched here and handed to the browser as a download.
    if (csv.dataset.ready) return;
    event.preventDefault();
    try {
      const text = await api(query(groupBy.value), { headers: { Accept: 'text/csv' }, signal });
      const url = URL.createObjectURL(new Blob([text], { type: 'text/csv' }));
      Object.assign(csv, { href: url, download: `sdbox-usage-${groupBy.value}.csv` });
      csv.dataset.ready = 'true';
      csv.click();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    } catch (error) {
      toast(error.message, { error: true });
    } finally {
      delete csv.dataset.ready;
      csv.href = '#usage';
    }
  });

  view.append(
    h('div', { class: 'page-head' }, h('div', {}, h('h1', { tabindex: -1, text: 'Usage' }),
      h('p', { class: 'subtitle', text: 'What finished tasks used, by the day they were submitted (UTC); and the quotas' }))),
    h('section', { class: 'card stack', 'aria-label': 'Filters' }, filters),
    h('section', { class: 'card stack', 'aria-labelledby': 'chart-title' }, h('h2', { id: 'chart-title', text: 'Images per day' }), chart),
    h('section', { class: 'stack', 'aria-labelledby': 'usage-title' }, h('h2', { id: 'usage-title', text: 'Usage' }), table),
    quotasSection(signal));
  await load();
}

/** Bars of images per UTC day, one per day from the first to the last with a task (days without are 0). */
function drawChart(container, rows) {
  if (rows.length === 0) {
    replace(container, h('p', { class: 'empty', text: 'No finished task in this period.' }));
    return;
  }
  const byDay = new Map(rows.map((row) => [row.key, row]));
  const days = [];
  for (let time = Date.parse(`${rows[0].key}T00:00:00Z`), end = Date.parse(`${rows.at(-1).key}T00:00:00Z`); time <= end && days.length < 400; time += 86400000) {
    days.push(new Date(time).toISOString().slice(0, 10));
  }
  const most = Math.max(1, ...rows.map((row) => row.images));
  const [width, height, left, bottom, top] = [Math.max(320, days.length * 28 + 48), 200, 40, 28, 12];
  const slot = (width - left) / days.length;
  const svg = document.createElementNS(SVG, 'svg');
  const set = (element, attributes) => { for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value)); return element; };
  const node = (tag, attributes, text) => {
    const element = set(document.createElementNS(SVG, tag), attributes);
    if (text !== undefined) element.textContent = text;
    return element;
  };
  set(svg, { viewBox: `0 0 ${width} ${height}`, width: '100%', height, role: 'img', 'aria-label': `Images per day, ${days[0]} to ${days.at(-1)}`, class: 'usage-chart' });
  const plot = height - bottom - top;
  svg.append(node('line', { x1: left, y1: top + plot, x2: width, y2: top + plot, class: 'axis' }));
  svg.append(node('text', { x: left - 6, y: top + 4, 'text-anchor': 'end', class: 'tick' }, String(most)));
  svg.append(node('text', { x: left - 6, y: top + plot, 'text-anchor': 'end', class: 'tick' }, '0'));
  days.forEach((day, index) => {
    const row = byDay.get(day) ?? { images: 0, tasks: 0, workerSeconds: 0 };
    const barHeight = (row.images / most) * plot;
    const x = left + index * slot + slot * 0.15;
    const bar = node('rect', {
      x, y: top + plot - barHeight, width: slot * 0.7, height: barHeight, class: 'bar-day',
      'data-day': day, 'data-images': row.images,
    });
    bar.append(node('title', {}, `${day}: ${row.images} images, ${row.tasks} tasks, ${format.duration(row.workerSeconds)} of worker time`));
    svg.append(bar);
    if (days.length <= 14 || index % Math.ceil(days.length / 14) === 0) {
      svg.append(node('text', { x: x + slot * 0.35, y: height - 8, 'text-anchor': 'middle', class: 'tick' }, day.slice(5)));
    }
  });
  replace(container, svg);
}

/** The quotas: a table of each with what its subject used, and a form to set one. */
function quotasSection(signal) {
  const rows = h('tbody');
  const used = (use, limit, seconds) => `${seconds ? format.duration(use) : use} of ${limit === undefined || limit === null ? '∞' : (seconds ? format.duration(limit) : limit)}`;
  const load = async () => {
    const { quotas } = await api('/admin/quotas', { signal });
    replace(rows, quotas.length > 0 ? quotas.map((quota) => h('tr', { dataset: { quota: `${quota.type}/${quota.name}` } },
      h('td', {}, quota.type), h('td', { class: 'mono', text: quota.name }),
      h('td', { class: 'num', text: used(quota.day.images, quota.quota.imagesPerDay) }),
      h('td', { class: 'num', text: used(quota.month.images, quota.quota.imagesPerMonth) }),
      h('td', { class: 'num', text: used(quota.day.workerSeconds, quota.quota.workerSecondsPerDay, true) }),
      h('td', { class: 'num', text: used(quota.month.workerSeconds, quota.quota.workerSecondsPerMonth, true) }),
      h('td', {}, h('button', {
        type: 'button', class: 'danger small', 'aria-label': `Remove the quota of ${quota.type} ${quota.name}`, text: 'Remove',
        onclick: async () => {
          if (!await confirmDialog({ title: `Remove the quota of ${quota.name}?`, message: 'Its submissions are no longer limited.', confirmLabel: 'Remove', danger: true })) return;
          try {
            await api(`/admin/quotas/${quota.type}/${encodeURIComponent(quota.name)}`, { method: 'DELETE' });
            toast(`Removed the quota of ${quota.name}`);
          } catch (error) {
            toast(error.message, { error: true });
          }
          load();
        },
      })))) : h('tr', {}, h('td', { colspan: 7, class: 'empty', text: 'No quota: nobody is limited.' })));
  };

  const type = h('select', { name: 'type' }, h('option', { value: 'user', text: 'user' }), h('option', { value: 'key', text: 'API key' }));
  const name = h('input', { name: 'name', required: true, autocomplete: 'off', spellcheck: 'false' });
  const limits = LIMITS.map(([limit, label]) => [limit, label, h('input', { name: limit, type: 'number', min: 0, step: limit.startsWith('images') ? 1 : 'any', placeholder: 'no limit' })]);
  const message = h('p', { class: 'error-text', role: 'alert', hidden: true });
  const form = h('form', { class: 'stack quota-form' },
    h('p', { class: 'muted', text: 'Limits per UTC day and calendar month; an empty field is no limit. A submission over a quota is refused with 429 until it resets. Images of waiting tasks count too.' }),
    h('div', { class: 'fields' }, field('For', type), field('User name or key id', name, { class: 'span-2' }), limits.map(([, label, input]) => field(label, input))),
    message, h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', text: 'Save quota' })));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    message.hidden = true;
    const body = Object.fromEntries(limits.map(([limit, , input]) => [limit, input.value === '' ? null : Number(input.value)]));
    try {
      await api(`/admin/quotas/${type.value}/${encodeURIComponent(name.value.trim())}`, { method: 'PUT', body });
      toast(`Saved the quota of ${name.value.trim()}`);
      load();
    } catch (error) {
      message.textContent = error.message;
      message.hidden = false;
    }
  });
  load().catch((error) => toast(error.message, { error: true }));
  return h('section', { class: 'stack', 'aria-label': 'Quotas' },
    h('div', { class: 'card stack' }, h('h2', { id: 'quotas-title', text: 'Quotas' }),
      h('div', { class: 'table-wrap' }, h('table', { class: 'quotas', 'aria-labelledby': 'quotas-title' },
        h('thead', {}, h('tr', {}, ['For', 'Name', 'Images today', 'Images this month', 'Worker time today', 'Worker time this month', '']
          .map((label) => h('th', { scope: 'col', text: label })))),
        rows))),
    h('div', { class: 'card' }, h('h2', { text: 'Set a quota' }), form));
}
