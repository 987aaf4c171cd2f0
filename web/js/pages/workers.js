// Workers and GPUs: each GPU's reserved memory as a bar, every worker process (model, state, since when,
// tasks served), queues, and each pool's settings, editable in place. Refreshed every second.

import { api } from '../api.js';
import { badge, confirmDialog, field, h, meter, replace, syncChildren, toast } from '../dom.js';
import * as format from '../format.js';
import { poll } from '../live.js';

export const title = 'Workers & GPUs';

const STATE_TONES = { ready: 'ok', busy: 'accent', starting: 'info', reloading: 'info', parking: 'info', parked: '', stopping: 'warn', down: 'bad' };

export async function mount(view, { signal }) {
  const stats = h('div', { class: 'stats', 'aria-live': 'off' });
  const gpus = h('div', { class: 'grid cards' });
  const workerRows = h('tbody');
  const noWorkers = h('p', { class: 'empty', text: 'No worker is running. Workers start when tasks arrive, and stop when idle.' });
  const pools = h('tbody');
  const nodeRows = h('tbody');
  const fleet = h('section', { class: 'stack', 'aria-labelledby': 'fleet-title', hidden: true },
    h('h2', { id: 'fleet-title', text: 'Boxes' }),
    h('p', { class: 'muted', text: 'Every box of the fleet on this database, as it last reported; a box that stopped renewing its heartbeat is not live, and its tasks go to the others.' }),
    h('div', { class: 'table-wrap' },
      h('table', {},
        h('thead', {}, h('tr', {}, ['Box', 'State', 'Last heartbeat', 'Workers', 'Models', 'GPUs', 'Queued']
          .map((name) => h('th', { scope: 'col', class: ['Queued'].includes(name) ? 'num' : '', text: name })))),
        nodeRows)));
  view.append(
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', { tabindex: -1, text: 'Workers & GPUs' }),
        h('p', { class: 'subtitle', text: 'One pool of worker processes per checkpoint; updated live.' }))),
    h('section', { class: 'card', 'aria-label': 'Summary' }, stats),
    fleet,
    h('section', { 'aria-labelledby': 'gpus-title' }, h('h2', { id: 'gpus-title', text: 'GPUs' }), gpus),
    h('section', { class: 'stack', 'aria-labelledby': 'workers-title' },
      h('h2', { id: 'workers-title', text: 'Workers' }),
      h('div', { class: 'table-wrap' },
        h('table', {},
          h('thead', {}, h('tr', {}, ['Worker', 'Model', 'State', 'Tier', 'Since', 'Tasks served', 'Parks / reloads', 'Task', 'GPU', 'Memory', 'Process']
            .map((name) => h('th', { scope: 'col', class: ['Tasks served', 'Parks / reloads', 'Memory'].includes(name) ? 'num' : '', text: name })))),
          workerRows),
        noWorkers)),
    remoteSection(signal),
    h('section', { class: 'stack', 'aria-labelledby': 'pools-title' },
      h('h2', { id: 'pools-title', text: 'Pools' }),
      h('p', { class: 'muted', text: 'Each checkpoint has its pool. Change a value and save the row; empty fields keep their current value.' }),
      h('div', { class: 'table-wrap' },
        h('table', {},
          h('thead', {}, h('tr', {}, ['Model', 'Workers', 'Queued', 'Cold starts', 'Min', 'Max', 'Idle timeout (s)', 'GPU memory (MiB)', 'RAM parked (MiB)', 'Task timeout (s)', '']
            .map((name) => h('th', { scope: 'col', text: name })))),
          pools))));

  let latest = { workers: [], queues: {} };
  poll(signal, 1000, async () => {
    latest = await api('/workers', { signal });
    renderStats(stats, latest);
    renderGPUs(gpus, latest);
    fleet.hidden = !latest.nodes;
    const now = Date.now();
    syncChildren(nodeRows, (latest.nodes ?? []).map((node) => ({ ...node, here: node.name === latest.node, second: Math.floor(now / 1000) })),
      (node) => node.name, nodeRow);
    const second = Math.floor(Date.now() / 1000);
    syncChildren(workerRows, latest.workers.map((worker) => ({ ...worker, second })), (worker) => worker.id, workerRow);
    noWorkers.hidden = latest.workers.length > 0;
    updatePoolCounts(pools, latest);
  });
  const loadPools = async () => {
    const { functions } = await api('/list/sdapi/functions', { signal });
    syncPools(pools, functions, () => loadPools().catch((error) => toast(error.message, { error: true })));
    updatePoolCounts(pools, latest);
  };
  poll(signal, 5000, loadPools);
}

function renderStats(container, data) {
  const busy = data.workers.filter((worker) => worker.state === 'busy').length;
  const remotes = data.workers.filter((worker) => worker.remote);
  const queued = Object.values(data.queues ?? {}).reduce((sum, count) => sum + count, 0);
  const slots = data.gpus.length > 0 ? `${data.gpus.length} GPU${data.gpus.length === 1 ? '' : 's'} (${data.gpuSource})` : `CPU only, ${data.cpuSlots} slots`;
  const items = [
    stat('Workers on GPUs', `${data.workers.filter((worker) => worker.tier === 'gpu' && !worker.remote).length} of ${data.maxInstances}`),
    stat('Parked in RAM', data.hostMemoryMiB > 0
      ? `${data.workers.filter((worker) => worker.tier === 'ram').length} · ${format.mebibytes(data.parkedMiB)} of ${format.mebibytes(data.hostMemoryMiB)}`
      : 'off'),
    stat('Busy', String(busy)),
    stat('Queued tasks', String(queued)),
    stat('Devices', slots),
    ...(remotes.length > 0 ? [stat('Remote workers up', `${remotes.filter((worker) => worker.state !== 'down').length} of ${remotes.length}`)] : []),
    stat('Engine', data.referenceWorker ? 'reference worker' : (data.defaultProfile ?? '')),
  ];
  if (data.referenceWorker) {
    items.push(h('p', { class: 'notice warn', role: 'note', text: 'Workers are sdbox\'s built-in reference worker: it draws test images, not diffusion. Configure workers.launch for A1111, Forge or SD.Next.' }));
  }
  replace(container, ...items);
}

function stat(label, value) {
  return h('div', {}, h('span', { class: 'stat', text: value }), h('span', { class: 'label', text: label }));
}

function renderGPUs(container, data) {
  if (data.gpus.length === 0) {
    const used = data.workers.length;
    replace(container, h('article', { class: 'card gpu' },
      h('h3', { text: 'No GPU' }),
      h('p', { class: 'muted', text: `Workers run on the CPU: ${used} of ${data.cpuSlots} slots in use.` }),
      meter(used, data.cpuSlots, 'CPU worker slots in use', `${used} of ${data.cpuSlots} slots`)));
    return;
  }
  syncChildren(container, data.gpus, (gpu) => gpu.index, (gpu) => {
    const inUse = gpu.inUseMiB === null || gpu.inUseMiB === undefined ? '' : ` · ${format.mebibytes(gpu.inUseMiB)} in use, as workers report`;
    const text = `${format.mebibytes(gpu.plannedMiB)} of ${format.mebibytes(gpu.memoryMiB)} reserved${inUse}`;
    return h('article', { class: 'card gpu', 'aria-labelledby': `gpu-${gpu.index}` },
      h('div', { class: 'spread' },
        h('h3', { id: `gpu-${gpu.index}`, text: `GPU ${gpu.index} · ${gpu.name}` }),
        badge(`${gpu.workers} worker${gpu.workers === 1 ? '' : 's'}`, gpu.workers > 0 ? 'accent' : '')),
      meter(gpu.plannedMiB, gpu.memoryMiB, `GPU ${gpu.index} memory`, text),
      h('p', { class: 'muted', text }));
  });
}

/** A box of the fleet: whether it is live, when it last renewed its heartbeat, and what it runs. */
function nodeRow(node) {
  const heartbeat = format.parseTime(node.heartbeatAt);
  const workers = node.report?.workers ?? [];
  const states = Object.entries(workers.reduce((counts, worker) => ({ ...counts, [worker.state]: (counts[worker.state] ?? 0) + 1 }), {}))
    .map(([state, count]) => `${count} ${state}`).join(', ');
  const gpus = node.report?.gpus ?? [];
  const queued = Object.values(node.report?.queues ?? {}).reduce((sum, count) => sum + count, 0);
  return h('tr', { dataset: { node: node.name, live: String(node.live) } },
    h('td', { class: 'mono', text: node.here ? `${node.name} (this box)` : node.name }),
    h('td', {}, badge(node.live ? 'live' : 'not answering', node.live ? 'ok' : 'bad')),
    h('td', { class: 'nowrap', title: format.dateTime(heartbeat), text: heartbeat ? `${format.duration((Date.now() - heartbeat.getTime()) / 1000)} ago` : '—' }),
    h('td', { text: workers.length === 0 ? 'none' : `${workers.length}: ${states}` }),
    h('td', { class: 'mono', text: [...new Set(workers.map((worker) => worker.model))].join(', ') || '—' }),
    h('td', { text: gpus.length === 0 ? 'CPU only' : gpus.map((gpu) => `GPU ${gpu.index}: ${format.mebibytes(gpu.plannedMiB)} of ${format.mebibytes(gpu.memoryMiB)}`).join(' · ') }),
    h('td', { class: 'num', text: String(queued) }));
}

function workerRow(worker) {
  const since = format.parseTime(worker.since);
  return h('tr', { dataset: { worker: worker.id, model: worker.model } },
    h('td', { class: 'mono', text: `#${worker.id}` }),
    h('td', { class: 'mono', title: worker.function, text: worker.model }),
    h('td', {}, badge(worker.state, STATE_TONES[worker.state])),
    h('td', { text: worker.remote ? 'remote' : (worker.tier === 'ram' ? 'RAM (parked)' : 'GPU') }),
    h('td', { class: 'nowrap', title: format.dateTime(since), text: since ? format.duration((Date.now() - since.getTime()) / 1000) : '—' }),
    h('td', { class: 'num', text: String(worker.tasksServed) }),
    h('td', { class: 'num', text: `${worker.parks} / ${worker.reloads}` }),
    h('td', {}, worker.taskId ? h('a', { class: 'mono', href: `#tasks/${encodeURIComponent(worker.taskId)}`, text: worker.taskId }) : '—'),
    h('td', { text: worker.remote ? 'elsewhere' : (worker.gpu === null || worker.gpu === undefined ? 'CPU' : `GPU ${worker.gpu}`) }),
    h('td', { class: 'num', text: worker.tier === 'ram'
      ? `${format.mebibytes(worker.hostMemoryMiB)} RAM`
      : (worker.gpuMemoryMiB ? format.mebibytes(worker.gpuMemoryMiB) : '—') }),
    h('td', { class: 'mono muted', title: worker.remote ? `checkpoints: ${worker.remote.checkpoints.join(', ') || 'none known'}` : '',
      text: worker.remote ? remoteText(worker.remote) : `pid ${worker.pid ?? '—'} · :${worker.port}` }));
}

/** A remote worker's name, URL (never its credentials: sdbox masks them) and last probe's latency. */
function remoteText(remote) {
  const latency = remote.latencyMilliseconds === null || remote.latencyMilliseconds === undefined ? '' : ` · ${Math.round(remote.latencyMilliseconds)} ms`;
  return `${remote.name} · ${remote.url}${latency}${remote.error ? ` · ${remote.error}` : ''}`;
}

// MARK: Pools

const POOL_FIELDS = [
  { setting: 'minInstances', body: 'minInstances', label: 'Min instances', min: 0, max: 1024 },
  { setting: 'maxInstances', body: 'maxInstances', label: 'Max instances', min: 1, max: 1024 },
  { setting: 'idleTimeoutSeconds', body: 'idleTimeout', label: 'Idle timeout in seconds', min: 0, max: 30 * 86400 },
  { setting: 'gpuMemoryMiB', body: 'gpuMemorySize', label: 'GPU memory in MiB', min: 0, max: 1 << 24 },
  { setting: 'hostMemoryMiB', body: 'hostMemorySize', label: 'System RAM a parked worker takes, in MiB', min: 0, max: 1 << 24 },
  { setting: 'taskTimeoutSeconds', body: 'timeout', label: 'Task timeout in seconds', min: 1, max: 7 * 86400 },
];

/** Pool rows are rebuilt only when their settings changed and nobody is editing them. */
function syncPools(tbody, functions, reload) {
  const editing = new Set([...tbody.querySelectorAll('tr[data-dirty="true"], tr:focus-within')].map((row) => row.dataset.key));
  const keep = functions.map((fn) => (editing.has(fn.model) ? JSON.parse(tbody.querySelector(`tr[data-key="${CSS.escape(fn.model)}"]`).dataset.signature) : fn));
  syncChildren(tbody, keep, (fn) => fn.model, (fn) => poolRow(fn, reload));
  if (functions.length === 0) tbody.append(h('tr', {}, h('td', { colspan: 11, class: 'empty', text: 'No pool yet: a checkpoint gets one when it is first used.' })));
}

function poolRow(fn, reload) {
  const inputs = POOL_FIELDS.map((spec) => h('input', {
    type: 'number', inputmode: 'numeric', min: spec.min, max: spec.max, step: 1, name: spec.body,
    value: fn.settings?.[spec.setting] ?? '', 'aria-label': `${spec.label} for ${fn.model}`,
  }));
  const save = h('button', { type: 'button', class: 'small primary', text: 'Save', disabled: true, 'aria-label': `Save pool settings of ${fn.model}` });
  const row = h('tr', { dataset: { pool: fn.model } },
    h('td', {}, h('div', { class: 'mono', text: fn.model }), h('div', { class: 'muted mono', text: fn.functionName })),
    h('td', { class: 'num', dataset: { count: 'workers' }, text: '0' }),
    h('td', { class: 'num', dataset: { count: 'queued' }, text: '0' }),
    h('td', { class: 'num', dataset: { count: 'coldStarts' }, text: '0' }),
    inputs.map((input) => h('td', {}, input)),
    h('td', {}, save));
  row.addEventListener('input', () => {
    row.dataset.dirty = 'true';
    save.disabled = false;
  });
  const submit = async () => {
    const body = { models: [fn.model] };
    for (const input of inputs) {
      if (input.value === '') continue;
      if (!input.checkValidity()) {
        input.reportValidity();
        return;
      }
      body[input.name] = Number(input.value);
    }
    save.disabled = true;
    try {
      await api('/batch_update_sd_resource', { method: 'POST', body });
      toast(`Saved the pool of ${fn.model}`);
      delete row.dataset.dirty;
      reload();
    } catch (error) {
      save.disabled = false;
      toast(`${fn.model}: ${error.detail || error.message}`, { error: true });
    }
  };
  save.addEventListener('click', submit);
  row.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && event.target.tagName === 'INPUT') {
      event.preventDefault();
      submit();
    }
  });
  return row;
}

function updatePoolCounts(tbody, data) {
  for (const row of tbody.querySelectorAll('tr[data-pool]')) {
    const model = row.dataset.pool;
    row.querySelector('[data-count="workers"]').textContent = String(data.workers.filter((worker) => worker.model === model).length);
    row.querySelector('[data-count="queued"]').textContent = String(data.queues?.[model] ?? 0);
    row.querySelector('[data-count="coldStarts"]').textContent = String(data.coldStarts?.[model] ?? 0);
  }
}

// MARK: Remote workers

/**
 * Remote workers (A1111, Forge or SD.Next servers on other machines): those of the configuration file,
 * listed, and those added here, which can be replaced (the same name again) or removed. Admins only: for
 * anyone else the section stays hidden.
 */
function remoteSection(signal) {
  const rows = h('tbody');
  const section = h('section', { class: 'stack', 'aria-labelledby': 'remote-title', hidden: true },
    h('h2', { id: 'remote-title', text: 'Remote workers' }),
    h('p', { class: 'muted', text: 'A1111-compatible servers sdbox does not start: each takes the tasks of the checkpoint it holds. Passwords are never shown back.' }),
    h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, ['Name', 'URL', 'Basic auth', 'Switches models', 'From', ''].map((name) => h('th', { scope: 'col', text: name })))),
      rows)));
  const load = async () => {
    let list;
    try {
      ({ remoteWorkers: list } = await api('/admin/workers/remote', { signal }));
    } catch (error) {
      if (error.status === 403 || error.status === 401) return;
      throw error;
    }
    section.hidden = false;
    replace(rows, ...list.map((remote) => h('tr', { dataset: { remote: remote.name } },
      h('td', { class: 'mono', text: remote.name }),
      h('td', { class: 'mono', text: remote.url }),
      h('td', { class: 'mono', text: remote.basicAuth ?? '—' }),
      h('td', { text: remote.switchModels ? 'yes' : 'no' }),
      h('td', { text: remote.source === 'configuration' ? 'configuration file' : 'added here' }),
      h('td', {}, remote.source === 'configuration' ? '' : h('button', {
        type: 'button', class: 'danger small', text: 'Remove', 'aria-label': `Remove remote worker ${remote.name}`,
        onclick: async () => {
          if (!await confirmDialog({ title: `Remove ${remote.name}?`, message: 'A task it runs finishes first.', confirmLabel: 'Remove', danger: true })) return;
          try {
            await api(`/admin/workers/remote/${encodeURIComponent(remote.name)}`, { method: 'DELETE' });
            toast(`Removed ${remote.name}`);
          } catch (error) {
            toast(error.message, { error: true });
          }
          load();
        },
      })))));
    if (list.length === 0) replace(rows, h('tr', {}, h('td', { colspan: 6, class: 'empty', text: 'None yet.' })));
  };

  const name = h('input', { name: 'remoteName', required: true, autocomplete: 'off', spellcheck: 'false', maxlength: 64 });
  const url = h('input', { name: 'remoteURL', type: 'url', required: true, placeholder: 'http://192.168.1.20:7860', spellcheck: 'false' });
  const auth = h('input', { name: 'remoteAuth', autocomplete: 'off', placeholder: 'user:password (A1111 --api-auth)', spellcheck: 'false' });
  const memory = h('input', { name: 'remoteMemory', type: 'number', min: 0, max: 1 << 24, step: 1, inputmode: 'numeric' });
  const models = h('input', { name: 'remoteModels', placeholder: 'any it holds', spellcheck: 'false' });
  const switches = h('input', { name: 'remoteSwitch', type: 'checkbox' });
  const message = h('p', { class: 'error-text', role: 'alert', hidden: true });
  const form = h('form', { class: 'stack', 'aria-label': 'Add a remote worker' },
    field('Name', name), field('URL', url), field('Basic auth', auth), field('GPU memory in MiB', memory),
    field('Models it may serve, comma-separated', models),
    h('label', { class: 'inline' }, switches, ' sdbox may switch its checkpoint (only for a server nobody else uses)'),
    message, h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', text: 'Save remote worker' })));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    message.hidden = true;
    const body = { name: name.value.trim(), url: url.value.trim(), switchModels: switches.checked };
    if (auth.value) body.basicAuth = auth.value;
    if (memory.value) body.gpuMemoryMiB = Number(memory.value);
    const listed = models.value.split(',').map((model) => model.trim()).filter(Boolean);
    if (listed.length > 0) body.models = listed;
    try {
      const saved = await api('/admin/workers/remote', { method: 'POST', body });
      toast(`Saved ${saved.name}`);
      auth.value = '';
      load();
    } catch (error) {
      message.textContent = error.message;
      message.hidden = false;
    }
  });
  section.append(h('details', {}, h('summary', { text: 'Add or replace a remote worker' }), form));
  load().catch((error) => toast(error.message, { error: true }));
  return section;
}

