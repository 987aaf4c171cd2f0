// Tasks: a live table filtered by state, model and time, paged newest first; and one task's detail
// (parameters, info, images, error, attempts, timings) with its live progress and a cancel button.

import { api } from '../api.js';
import { badge, field, h, replace, syncChildren, toast } from '../dom.js';
import * as format from '../format.js';
import { sendToPlayground } from '../handoff.js';
import { poll } from '../live.js';
import { progressView } from '../progress.js';

export const title = 'Tasks';

const STATES = ['waiting', 'running', 'succeeded', 'failed', 'cancelled'];
const STATE_TONES = { waiting: 'info', running: 'accent', succeeded: 'ok', failed: 'bad', cancelled: 'warn' };
const FINAL = new Set(['succeeded', 'failed', 'cancelled']);

// Whether the caller may hold the queue and reorder it (an admin): known once GET /admin/queue answers.
let queueControl = false;

// The filters and page survive a visit to a task's detail.
const listing = { state: '', model: '', since: '', before: '', limit: 50, cursors: [] };

export async function mount(view, context) {
  if (context.params.length > 0) return mountDetail(view, context.params[0], context);
  return mountList(view, context);
}

export async function cancelTask(id) {
  try {
    const answer = await api(`/tasks/${encodeURIComponent(id)}/cancellation`, { method: 'POST' });
    toast(`Task ${id} is ${answer.status}`);
    return answer;
  } catch (error) {
    toast(`Could not cancel ${id}: ${error.message}`, { error: true });
    return null;
  }
}

// MARK: List

function mountList(view, { signal }) {
  const state = h('select', { name: 'state' }, h('option', { value: '', text: 'Any' }), STATES.map((name) => h('option', { value: name, text: name })));
  const model = h('select', { name: 'model' }, h('option', { value: '', text: 'Any' }));
  const since = h('input', { type: 'datetime-local', name: 'since' });
  const before = h('input', { type: 'datetime-local', name: 'before' });
  const limit = h('select', { name: 'limit' }, [25, 50, 100, 200].map((n) => h('option', { value: n, text: String(n) })));
  state.value = listing.state;
  since.value = listing.since;
  before.value = listing.before;
  limit.value = String(listing.limit);
  const filters = h('form', { class: 'card row', role: 'search', 'aria-label': 'Filter tasks' },
    field('State', state), field('Model', model), field('Created after', since), field('Created before', before), field('Per page', limit),
    h('button', { type: 'reset', text: 'Clear' }));
  const rows = h('tbody');
  const empty = h('p', { class: 'empty', hidden: true, text: 'No task matches.' });
  const newer = h('button', { type: 'button', text: '← Newer' });
  const older = h('button', { type: 'button', text: 'Older →' });
  const pageLabel = h('span', { class: 'muted', 'aria-live': 'polite' });
  const pauseButton = h('button', { type: 'button', hidden: true });
  const pausedNotice = h('p', { class: 'notice warn', role: 'status', hidden: true });
  const showQueue = (queue) => {
    queueControl = true;
    pauseButton.hidden = false;
    pauseButton.textContent = queue.paused ? 'Resume queue' : 'Pause queue';
    pauseButton.dataset.paused = String(queue.paused);
    const models = queue.pausedModels ?? [];
    pausedNotice.hidden = !queue.paused && models.length === 0;
    pausedNotice.textContent = queue.paused
      ? 'The queue is paused: new tasks are kept, none starts; running ones finish.'
      : `Paused pools: ${models.join(', ')}. Their tasks are kept; none starts.`;
  };
  pauseButton.addEventListener('click', async () => {
    const resume = pauseButton.dataset.paused === 'true';
    try {
      showQueue(await api(`/admin/queue/${resume ? 'resume' : 'pause'}`, { method: 'POST' }));
      toast(resume ? 'Queue resumed' : 'Queue paused');
    } catch (error) {
      toast(error.message, { error: true });
    }
  });
  api('/admin/queue', { signal }).then(showQueue).catch(() => {});
  view.append(
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', { tabindex: -1, text: 'Tasks' }), h('p', { class: 'subtitle', text: 'Your tasks, newest first; updated live.' })),
      pauseButton),
    pausedNotice,
    filters,
    h('div', { class: 'table-wrap' },
      h('table', {},
        h('caption', { class: 'visually-hidden', text: 'Tasks' }),
        h('thead', {}, h('tr', {}, ['Task', 'Kind', 'Model', 'Status', 'Created', 'Waited', 'Ran', 'Attempts', '']
          .map((name) => h('th', { scope: 'col', class: ['Waited', 'Ran', 'Attempts'].includes(name) ? 'num' : '', text: name })))),
        rows),
      empty),
    h('nav', { class: 'spread', 'aria-label': 'Pages of tasks', style: 'margin-top: 0.75rem' }, newer, pageLabel, older));

  let next = null;
  const query = () => {
    const parameters = new URLSearchParams({ limit: String(listing.limit) });
    if (listing.state) parameters.set('state', listing.state);
    if (listing.model) parameters.set('model', listing.model);
    if (listing.since) parameters.set('since', new Date(listing.since).toISOString());
    const cursor = listing.cursors.at(-1) ?? (listing.before ? new Date(listing.before).toISOString() : null);
    if (cursor) parameters.set('before', cursor);
    return `/tasks?${parameters}`;
  };
  const load = async () => {
    const page = await api(query(), { signal });
    next = page.next ?? null;
    const now = Math.floor(Date.now() / 1000);
    syncChildren(rows, page.tasks.map((task) => ({ ...task, now: FINAL.has(task.status) ? 0 : now })), (task) => task.taskId, taskRow);
    empty.hidden = page.tasks.length > 0;
    newer.disabled = listing.cursors.length === 0;
    older.disabled = !next;
    pageLabel.textContent = `Page ${listing.cursors.length + 1}`;
    for (const task of page.tasks) addOption(model, task.model);
  };
  const restart = () => {
    listing.state = state.value;
    listing.model = model.value;
    listing.since = since.value;
    listing.before = before.value;
    listing.limit = Number(limit.value);
    listing.cursors = [];
    load().catch((error) => toast(error.message, { error: true }));
  };
  filters.addEventListener('change', restart);
  filters.addEventListener('submit', (event) => event.preventDefault());
  filters.addEventListener('reset', () => setTimeout(restart));
  newer.addEventListener('click', () => {
    listing.cursors.pop();
    load();
  });
  older.addEventListener('click', () => {
    if (!next) return;
    listing.cursors.push(next);
    load();
  });
  api('/models', { signal }).then((models) => {
    for (const entry of models.filter((m) => m.type === 'stableDiffusion')) addOption(model, entry.name);
    model.value = listing.model;
  }).catch(() => {});
  poll(signal, 2000, load);
}

function addOption(select, value) {
  if (!value || [...select.options].some((option) => option.value === value)) return;
  select.append(h('option', { value, text: value }));
}

function timings(task) {
  const created = format.parseTime(task.createdAt);
  const started = format.parseTime(task.startedAt);
  const finished = format.parseTime(task.finishedAt);
  const now = new Date();
  const waited = created ? ((started ?? (FINAL.has(task.status) ? finished : now) ?? now) - created) / 1000 : null;
  const ran = started ? ((finished ?? now) - started) / 1000 : null;
  return { created, started, finished, waited, ran };
}

function taskRow(task) {
  const time = timings(task);
  const active = !FINAL.has(task.status);
  return h('tr', { dataset: { task: task.taskId, status: task.status } },
    h('td', {}, h('a', { class: 'mono', href: `#tasks/${encodeURIComponent(task.taskId)}`, text: task.taskId })),
    h('td', { text: task.kind }),
    h('td', { class: 'mono', text: task.model }),
    h('td', {}, badge(task.status, STATE_TONES[task.status]), task.error ? h('div', { class: 'error-text', title: task.error, text: truncate(task.error, 60) }) : null),
    h('td', { class: 'nowrap', title: format.dateTime(time.created), text: time.created?.toLocaleTimeString() ?? '—' }),
    h('td', { class: 'num nowrap', text: format.duration(time.waited) }),
    h('td', { class: 'num nowrap', text: format.duration(time.ran) }),
    h('td', { class: 'num', text: String(task.attempts) }),
    h('td', { class: 'nowrap' },
      queueControl && task.status === 'waiting' ? h('button', { type: 'button', class: 'small', 'aria-label': `Move task ${task.taskId} to the front`, text: 'To front', onclick: async (event) => {
        event.target.disabled = true;
        try {
          const moved = await api(`/admin/tasks/${encodeURIComponent(task.taskId)}/front`, { method: 'POST' });
          toast(`Task ${task.taskId} is next in its queue (position ${moved.queuePosition ?? 1})`);
        } catch (error) {
          toast(error.message, { error: true });
        }
      } }) : null,
      active ? h('button', { type: 'button', class: 'small danger', 'aria-label': `Cancel task ${task.taskId}`, text: 'Cancel', onclick: (event) => {
        event.target.disabled = true;
        cancelTask(task.taskId);
      } }) : null));
}

function truncate(text, length) {
  return text.length > length ? `${text.slice(0, length - 1)}…` : text;
}

// MARK: Detail

async function mountDetail(view, id, { signal }) {
  const path = `/tasks/${encodeURIComponent(id)}`;
  const status = h('span');
  const cancel = h('button', { type: 'button', class: 'danger', text: 'Cancel task', hidden: true });
  const reuse = h('button', { type: 'button', text: 'Open in playground', hidden: true });
  const progress = progressView(`Progress of task ${id}`);
  const progressCard = h('section', { class: 'card', 'aria-label': 'Progress', hidden: true }, progress.element);
  const facts = h('dl', { class: 'facts' });
  const errorBox = h('section', { class: 'card', hidden: true, 'aria-labelledby': 'error-title' }, h('h2', { id: 'error-title', text: 'Error' }), h('pre', { class: 'error-text' }));
  const images = h('div', { class: 'images' });
  const imagesCard = h('section', { class: 'card', hidden: true, 'aria-labelledby': 'images-title' }, h('h2', { id: 'images-title', text: 'Images' }), images);
  const parameters = h('div', { class: 'stack' });
  const info = h('div', { class: 'stack' });
  view.append(
    h('p', {}, h('a', { href: '#tasks', text: '← All tasks' })),
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', { tabindex: -1 }, 'Task ', h('span', { class: 'mono', text: id })), status),
      h('div', { class: 'actions' }, reuse, cancel)),
    progressCard,
    errorBox,
    h('div', { class: 'grid two' },
      h('section', { class: 'card', 'aria-labelledby': 'facts-title' }, h('h2', { id: 'facts-title', text: 'Task' }), facts),
      h('section', { class: 'card', 'aria-labelledby': 'parameters-title' }, h('h2', { id: 'parameters-title', text: 'Parameters' }), parameters)),
    imagesCard,
    h('section', { class: 'card', 'aria-labelledby': 'info-title' }, h('h2', { id: 'info-title', text: 'Info' }), info));

  let task = null;
  let result = null;
  cancel.addEventListener('click', async () => {
    cancel.disabled = true;
    await cancelTask(id);
  });
  reuse.addEventListener('click', () => sendToPlayground(task.kind, result?.parameters && Object.keys(result.parameters).length ? { ...task.request, ...result.parameters } : task.request));

  const render = () => {
    replace(status, badge(task.status, STATE_TONES[task.status]));
    const active = !FINAL.has(task.status);
    cancel.hidden = !active;
    reuse.hidden = false;
    progressCard.hidden = !active;
    const time = timings(task);
    replace(facts,
      fact('Kind', task.kind), fact('Model', h('span', { class: 'mono', text: task.model })), fact('Priority', String(task.priority ?? 0)),
      fact('Attempts', String(task.attempts)),
      fact('Created', format.dateTime(time.created)), fact('Started', format.dateTime(time.started)), fact('Finished', format.dateTime(time.finished)),
      fact('Waited', format.duration(time.waited)), fact('Ran', format.duration(time.ran)));
    errorBox.hidden = !task.error;
    errorBox.querySelector('pre').textContent = task.error ?? '';
    renderParameters(parameters, task.request ?? {});
    if (result) {
      imagesCard.hidden = !(result.ossUrl?.length > 0);
      replace(images, (result.ossUrl ?? []).map((url, index) => h('figure', {},
        h('a', { href: url, target: '_blank', rel: 'noopener' }, h('img', { src: url, alt: `Image ${index + 1} of task ${id}`, loading: 'lazy' })),
        h('figcaption', {}, h('a', { href: url, download: `${id}_${index}.png`, text: `Download image ${index + 1}` })))));
      renderInfo(info, result.info);
    } else {
      replace(info, h('p', { class: 'muted', text: FINAL.has(task.status) ? 'No info.' : 'Once the task finishes.' }));
    }
  };

  poll(signal, 1000, async () => {
    if (task && FINAL.has(task.status) && result) return;
    task = await api(path, { signal });
    if (FINAL.has(task.status)) {
      result = await api(`${path}/result`, { signal });
    } else {
      progress.update(await api(`${path}/progress`, { signal }));
    }
    render();
  });
}

function fact(name, value) {
  return [h('dt', { text: name }), h('dd', {}, value)];
}

const SHOWN_PARAMETERS = [
  ['prompt', 'Prompt'], ['negative_prompt', 'Negative prompt'], ['sampler_name', 'Sampler'], ['scheduler', 'Scheduler'],
  ['steps', 'Steps'], ['cfg_scale', 'CFG scale'], ['width', 'Width'], ['height', 'Height'], ['seed', 'Seed'],
  ['batch_size', 'Batch size'], ['n_iter', 'Batch count'], ['denoising_strength', 'Denoising strength'],
];

function renderParameters(container, request) {
  const shown = SHOWN_PARAMETERS.filter(([key]) => request[key] !== undefined && request[key] !== null && request[key] !== '');
  const vae = request.override_settings?.sd_vae;
  const inits = Array.isArray(request.init_images) ? request.init_images : [];
  const readable = { ...request };
  if (inits.length) readable.init_images = inits.map((image) => `<${format.bytes(Math.floor((image.length * 3) / 4))} image, base64>`);
  if (typeof readable.mask === 'string' && readable.mask.length > 200) readable.mask = `<${format.bytes(Math.floor((readable.mask.length * 3) / 4))} mask, base64>`;
  replace(container,
    h('dl', { class: 'facts' },
      shown.map(([key, name]) => fact(name, String(request[key]))),
      vae ? fact('VAE', vae) : null),
    inits.length ? h('div', { class: 'row' }, inits.map((image, index) => h('img', {
      class: 'init-preview', alt: `Input image ${index + 1}`, src: image.startsWith('data:') ? image : `data:image/png;base64,${image}`,
    }))) : null,
    h('details', {}, h('summary', { text: 'Request as sent to the worker' }), h('pre', { class: 'json', text: JSON.stringify(readable, null, 2) })));
}

function renderInfo(container, info) {
  const value = typeof info === 'string' ? safeParse(info) : info;
  const infotext = value?.infotexts?.[0];
  replace(container,
    infotext ? h('p', { class: 'mono', text: infotext }) : null,
    h('details', {}, h('summary', { text: 'Info from the worker' }), h('pre', { class: 'json', text: JSON.stringify(value, null, 2) })));
}

function safeParse(text) {
  try { return JSON.parse(text); } catch { return text; }
}
