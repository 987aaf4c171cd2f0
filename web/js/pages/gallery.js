// Gallery: thumbnails of recent outputs, newest first; a click shows the full image with its parameters,
// and "Send to playground" fills the playground's form with them.

import { APIError, api } from '../api.js';
import { h, replace } from '../dom.js';
import * as format from '../format.js';
import { sendToPlayground } from '../handoff.js';
import { poll } from '../live.js';

export const title = 'Gallery';

const PAGE = 24;
// Results by task id. Signed URLs expire (an hour by default), so an entry is fetched again after 30 min.
const results = new Map();
const RESULT_LIFETIME = 30 * 60 * 1000;
// Whether `GET /tasks/{id}/thumbnails` exists on this server; learnt from the first answer.
let thumbnailsRoute = true;

export async function mount(view, { signal }) {
  const grid = h('div', { class: 'gallery', 'aria-live': 'polite', 'aria-busy': 'true' });
  const empty = h('p', { class: 'card empty', hidden: true }, 'No images yet. Make some in the ', h('a', { href: '#playground', text: 'playground' }), '.');
  const more = h('button', { type: 'button', hidden: true, text: 'Show older images' });
  view.append(
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', { tabindex: -1, text: 'Gallery' }), h('p', { class: 'subtitle', text: 'Recent outputs of your tasks, newest first.' }))),
    grid, empty, h('div', { class: 'actions', style: 'justify-content: center; margin-top: 1rem' }, more));

  // Tasks shown, newest first: the first page is refreshed live, older pages are added by "Show older".
  let tasks = [];
  let next = null;
  let olderLoaded = false;
  let shown = [];
  const keyOf = (entry) => `${entry.task.taskId}/${entry.index}`;
  const open = (key) => openViewer(shown, shown.findIndex((entry) => keyOf(entry) === key));
  const render = async () => {
    const entries = [];
    for (const task of tasks) {
      const result = await resultOf(task.taskId, signal);
      (result.thumbnails ?? result.ossUrl ?? []).forEach((thumbnail, index) => entries.push({ task, result, index, thumbnail }));
    }
    shown = entries;
    const existing = new Map([...grid.children].map((node) => [node.dataset.key, node]));
    replace(grid, entries.map((entry) => existing.get(keyOf(entry)) ?? tile(entry, keyOf(entry), open)));
    grid.setAttribute('aria-busy', 'false');
    empty.hidden = entries.length > 0;
    more.hidden = !next;
  };
  poll(signal, 5000, async () => {
    const page = await api(`/tasks?state=succeeded&limit=${PAGE}`, { signal });
    const fresh = page.tasks.filter((task) => !tasks.some((known) => known.taskId === task.taskId));
    tasks = olderLoaded ? [...fresh, ...tasks] : page.tasks;
    if (!olderLoaded) next = page.next ?? null;
    await render();
  });
  more.addEventListener('click', async () => {
    more.disabled = true;
    try {
      const page = await api(`/tasks?state=succeeded&limit=${PAGE}&before=${encodeURIComponent(next)}`, { signal });
      olderLoaded = true;
      next = page.next ?? null;
      tasks = [...tasks, ...page.tasks];
      await render();
    } finally {
      more.disabled = false;
    }
  });
}

async function resultOf(id, signal) {
  const cached = results.get(id);
  if (cached && Date.now() - cached.fetched < RESULT_LIFETIME) return cached;
  const path = `/tasks/${encodeURIComponent(id)}`;
  const result = await api(`${path}/result`, { signal });
  if (thumbnailsRoute) {
    try {
      result.thumbnails = (await api(`${path}/thumbnails`, { signal })).thumbnails;
    } catch (error) {
      // Servers without thumbnails answer 404 for the route: use the full images instead.
      if (!(error instanceof APIError) || error.status !== 404) throw error;
      if (error.body?.error === 'not found') thumbnailsRoute = false;
    }
  }
  result.fetched = Date.now();
  results.set(id, result);
  return result;
}

function tile(entry, key, open) {
  const prompt = entry.result.parameters?.prompt ?? '';
  const label = prompt ? `${prompt} (task ${entry.task.taskId}, image ${entry.index + 1})` : `Task ${entry.task.taskId}, image ${entry.index + 1}`;
  return h('button', { type: 'button', class: 'thumb', dataset: { key, task: entry.task.taskId }, 'aria-label': `Show ${label}`, onclick: () => open(key) },
    h('img', { src: entry.thumbnail, alt: '', loading: 'lazy', width: 256, height: 256 }),
    h('span', { text: prompt || entry.task.model }));
}

/** The full image and its parameters in a dialog; the arrow keys step through the gallery. */
function openViewer(entries, start) {
  let position = start;
  const image = h('img', { alt: '' });
  const details = h('div', { class: 'stack' });
  const dialog = h('dialog', { class: 'wide', 'aria-labelledby': 'viewer-title' },
    h('div', { class: 'viewer' }, h('div', {}, image), details));
  const show = () => {
    const { task, result, index } = entries[position];
    const parameters = result.parameters ?? {};
    const url = result.ossUrl?.[index];
    image.src = url;
    image.alt = parameters.prompt ? `Image for “${parameters.prompt}”` : `Image ${index + 1} of task ${task.taskId}`;
    const seed = result.info?.all_seeds?.[index] ?? result.info?.seed ?? parameters.seed;
    const rows = [
      ['Prompt', parameters.prompt], ['Negative prompt', parameters.negative_prompt], ['Model', task.model],
      ['Sampler', parameters.sampler_name], ['Steps', parameters.steps], ['CFG scale', parameters.cfg_scale],
      ['Size', parameters.width && parameters.height ? `${parameters.width} × ${parameters.height}` : null], ['Seed', seed],
      ['Created', format.dateTime(task.createdAt)],
    ].filter(([, value]) => value !== undefined && value !== null && value !== '');
    replace(details,
      h('div', { class: 'spread' },
        h('h2', { id: 'viewer-title', text: `Image ${position + 1} of ${entries.length}` }),
        h('button', { type: 'button', class: 'quiet', 'aria-label': 'Close', text: '✕', onclick: () => dialog.close() })),
      h('dl', { class: 'facts' }, rows.map(([name, value]) => [h('dt', { text: name }), h('dd', { text: String(value) })])),
      h('div', { class: 'actions', style: 'justify-content: flex-start' },
        h('button', { type: 'button', class: 'primary', text: 'Send to playground', onclick: () => {
          dialog.close();
          sendToPlayground(task.kind, { ...parameters, seed, stable_diffusion_model: task.model });
        } }),
        h('a', { class: 'button', href: `#tasks/${encodeURIComponent(task.taskId)}`, onclick: () => dialog.close(), text: 'Open task' }),
        url ? h('a', { class: 'button', href: url, download: `${task.taskId}_${index}.png`, text: 'Download' }) : null),
      h('div', { class: 'actions', style: 'justify-content: flex-start' },
        h('button', { type: 'button', class: 'small', text: '← Previous', disabled: position === 0, onclick: () => step(-1) }),
        h('button', { type: 'button', class: 'small', text: 'Next →', disabled: position === entries.length - 1, onclick: () => step(1) })));
  };
  const step = (delta) => {
    position = Math.min(entries.length - 1, Math.max(0, position + delta));
    show();
  };
  dialog.addEventListener('keydown', (event) => {
    if (event.key === 'ArrowLeft') step(-1);
    if (event.key === 'ArrowRight') step(1);
  });
  dialog.addEventListener('close', () => dialog.remove());
  document.body.append(dialog);
  show();
  dialog.showModal();
}
