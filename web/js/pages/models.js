// Models: every model file by type with its status, size, hash and last use; upload by drag and drop or
// file picker (streamed, with bytes, speed and time left), install from a link (Hugging Face, Civitai, any
// https URL: a job on the box, with its progress), delete with confirmation, register a path; and the
// box's prompt styles (A1111's styles.csv), edited as a table.

import { api, upload } from '../api.js';
import { badge, confirmDialog, field, h, replace, syncChildren, toast } from '../dom.js';
import * as format from '../format.js';
import { poll } from '../live.js';
import { MODEL_TYPES, statusTone, typeLabel } from '../model-types.js';

export const title = 'Models';

// Uploads outlive a visit to another page: the queue is kept here and shown again on return.
const uploads = [];
let uploading = false;
let uploadsChanged = () => {};

export async function mount(view, { signal }) {
  const summary = h('p', { class: 'subtitle', text: 'Loading…' });
  const typeFilter = h('select', { name: 'type' },
    h('option', { value: '', text: 'All types' }),
    MODEL_TYPES.map((type) => h('option', { value: type.id, text: type.label })));
  const lists = h('div', { class: 'stack', 'aria-live': 'polite', 'aria-busy': 'true' });
  view.append(
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', { tabindex: -1, text: 'Models' }), summary),
      field('Show', typeFilter)),
    h('div', { class: 'grid two' }, uploadCard(signal), installCard(signal)),
    registerCard(),
    lists,
    stylesCard(signal));

  let models = [];
  let lastUsed = new Map();
  const render = () => {
    const shown = models.filter((model) => !typeFilter.value || model.type === typeFilter.value);
    const total = models.reduce((sum, model) => sum + (model.size || 0), 0);
    summary.textContent = `${models.length} model${models.length === 1 ? '' : 's'}, ${format.bytes(total)} on disk`;
    renderLists(lists, shown, lastUsed);
    lists.setAttribute('aria-busy', 'false');
  };
  typeFilter.addEventListener('change', render);
  poll(signal, 2000, async () => {
    models = await api('/models', { signal });
    render();
  });
  // Last use, from the most recent tasks (each names its checkpoint).
  poll(signal, 10000, async () => {
    const { tasks } = await api('/tasks?limit=500', { signal });
    lastUsed = new Map();
    for (const task of tasks) {
      const time = format.parseTime(task.createdAt);
      if (time && !(lastUsed.get(task.model) > time)) lastUsed.set(task.model, time);
    }
    render();
  });
}

function renderLists(container, models, lastUsed) {
  if (models.length === 0) {
    replace(container, h('div', { class: 'card empty', text: 'No models yet: upload one above, or put files in the models folder.' }));
    return;
  }
  const groups = MODEL_TYPES.map((type) => ({ type, models: models.filter((model) => model.type === type.id) }))
    .filter((group) => group.models.length > 0);
  const known = new Set(MODEL_TYPES.map((type) => type.id));
  const others = models.filter((model) => !known.has(model.type));
  if (others.length > 0) groups.push({ type: { id: 'other', label: 'Other' }, models: others });
  const minute = Math.floor(Date.now() / 60000); // so that "3 min ago" moves on
  syncChildren(container, groups.map((group) => ({ ...group, minute, lastUsed: group.models.map((m) => lastUsed.get(m.name)?.getTime() ?? null) })),
    (group) => group.type.id, (group) => modelTable(group.type, group.models, lastUsed));
}

function modelTable(type, models, lastUsed) {
  const rows = models.map((model) => {
    const used = lastUsed.get(model.name);
    return h('tr', { dataset: { model: model.name } },
      h('td', {}, h('div', { class: 'mono', text: model.name }), h('div', { class: 'muted', title: model.ossPath, text: shortPath(model.ossPath) })),
      h('td', {}, badge(model.status === 'registering' ? 'hashing' : model.status, statusTone(model.status)),
        model.error ? h('details', {}, h('summary', { text: 'Why' }), h('pre', { class: 'error-text', text: model.error })) : null),
      h('td', { class: 'num nowrap', text: format.bytes(model.size) }),
      h('td', { class: 'mono', title: model.etag || 'not hashed yet', text: model.shortHash || (model.etag ? model.etag.slice(0, 10) : '…') }),
      h('td', { class: 'nowrap', title: used ? format.dateTime(used) : '', text: used ? format.ago(used) : (model.status === 'loaded' ? 'now' : '—') }),
      h('td', { class: 'nowrap', title: format.dateTime(model.lastModificationTime), text: format.dateTime(model.registeredTime) }),
      h('td', {}, h('button', {
        type: 'button', class: 'danger small', 'aria-label': `Delete ${model.name}`, text: 'Delete',
        onclick: () => deleteModel(model),
      })));
  });
  return h('div', { class: 'table-wrap' },
    h('table', { class: 'models' },
      h('caption', {}, `${type.label} `, h('span', { class: 'muted', text: `(${models.length})` })),
      h('thead', {}, h('tr', {},
        ['Name', 'Status', 'Size', 'Hash', 'Last used', 'Added', 'Actions'].map((name, index) =>
          h('th', { scope: 'col', class: index === 2 ? 'num' : '', text: name })))),
      h('tbody', {}, rows)));
}

function shortPath(path = '') {
  const parts = path.split('/');
  return parts.length > 3 ? `…/${parts.slice(-3, -1).join('/')}/` : path;
}

async function deleteModel(model) {
  const confirmed = await confirmDialog({
    title: `Delete ${model.name}?`,
    message: `${model.ossPath} is removed from the models folder (for a registered model, only the link). A checkpoint's worker pool goes with it.`,
    confirmLabel: 'Delete', danger: true,
  });
  if (!confirmed) return;
  const path = `/admin/models/${encodeURIComponent(model.type)}/${encodeURIComponent(model.name)}`;
  try {
    await api(path, { method: 'DELETE' });
  } catch (error) {
    if (error.status !== 409) {
      toast(`Could not delete ${model.name}: ${error.message}`, { error: true });
      return;
    }
    const force = await confirmDialog({
      title: `${model.name} is in use`,
      message: `${error.detail || error.message}. Delete it anyway? Its workers are stopped.`,
      confirmLabel: 'Delete anyway', danger: true,
    });
    if (!force) return;
    try {
      await api(`${path}?force=true`, { method: 'DELETE' });
    } catch (forced) {
      toast(`Could not delete ${model.name}: ${forced.message}`, { error: true });
      return;
    }
  }
  toast(`Deleted ${model.name}`);
  document.querySelector(`tr[data-model="${CSS.escape(model.name)}"]`)?.remove();
}

// MARK: Upload

function typeSelect(name) {
  return h('select', { name, required: true }, MODEL_TYPES.map((type) => h('option', { value: type.id, text: type.label })));
}

function uploadCard(signal) {
  const type = typeSelect('type');
  const input = h('input', { type: 'file', class: 'visually-hidden', multiple: true, accept: '.safetensors,.ckpt,.pt,.pth,.bin,.gguf' });
  const zone = h('label', { class: 'dropzone' },
    input,
    h('strong', { text: 'Drop model files here' }),
    h('span', { class: 'muted', text: 'or choose files (.safetensors, .ckpt, .pt, .pth, .bin)' }));
  const list = h('ul', { class: 'uploads', 'aria-label': 'Uploads' });
  const add = (files) => {
    for (const file of files) uploads.push({ id: crypto.randomUUID(), file, type: type.value, state: 'waiting', loaded: 0, samples: [] });
    input.value = '';
    uploadsChanged();
    startUploads();
  };
  input.addEventListener('change', () => add([...input.files]));
  zone.addEventListener('dragover', (event) => {
    event.preventDefault();
    zone.classList.add('over');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (event) => {
    event.preventDefault();
    zone.classList.remove('over');
    add([...event.dataTransfer.files]);
  });
  uploadsChanged = () => syncChildren(list, uploads.map(uploadView), (item) => item.id, renderUpload);
  signal.addEventListener('abort', () => { uploadsChanged = () => {}; });
  uploadsChanged();
  return h('section', { class: 'card stack', 'aria-labelledby': 'upload-title' },
    h('h2', { id: 'upload-title', text: 'Upload' }),
    field('Type of the files', type),
    zone,
    list);
}

/** What an upload's row shows; rows are rebuilt only when this changes. */
function uploadView(item) {
  const speed = uploadSpeed(item);
  return {
    id: item.id, name: item.file.name, size: item.file.size, type: item.type, state: item.state, error: item.error,
    loaded: item.loaded, speed: Math.round(speed),
  };
}

function uploadSpeed(item) {
  const samples = item.samples;
  if (samples.length < 2) return 0;
  const first = samples[0];
  const last = samples[samples.length - 1];
  return last.time > first.time ? ((last.loaded - first.loaded) * 1000) / (last.time - first.time) : 0;
}

function renderUpload(view) {
  const item = uploads.find((candidate) => candidate.id === view.id);
  const percent = view.size > 0 ? Math.floor((view.loaded / view.size) * 100) : 0;
  let figures;
  switch (view.state) {
    case 'waiting': figures = `Waiting · ${format.bytes(view.size)}`; break;
    case 'uploading': {
      const left = view.speed > 0 ? format.duration((view.size - view.loaded) / view.speed) : '…';
      figures = `${format.bytes(view.loaded)} of ${format.bytes(view.size)} (${percent}%) · ${format.bytes(view.speed)}/s · ${left} left`;
      break;
    }
    case 'processing': figures = `${format.bytes(view.size)} sent · sdbox is saving it…`; break;
    case 'done': figures = `Uploaded ${format.bytes(view.size)} as ${typeLabel(view.type)}`; break;
    case 'exists': figures = 'A model of this name exists.'; break;
    default: figures = view.error || 'Failed';
  }
  const buttons = [];
  if (view.state === 'waiting' || view.state === 'uploading') {
    buttons.push(h('button', { type: 'button', class: 'small', 'aria-label': `Cancel upload of ${view.name}`, text: 'Cancel', onclick: () => cancelUpload(item) }));
  }
  if (view.state === 'exists') {
    buttons.push(h('button', { type: 'button', class: 'small danger', text: 'Replace it', onclick: () => retryUpload(item, true) }));
  }
  if (view.state === 'failed') {
    buttons.push(h('button', { type: 'button', class: 'small', text: 'Retry', onclick: () => retryUpload(item, false) }));
  }
  if (['done', 'failed', 'exists', 'cancelled'].includes(view.state)) {
    buttons.push(h('button', { type: 'button', class: 'small quiet', 'aria-label': `Dismiss ${view.name}`, text: 'Dismiss', onclick: () => dismissUpload(item) }));
  }
  return h('li', { class: 'upload stack', dataset: { state: view.state } },
    h('div', { class: 'spread' }, h('span', { class: 'mono', text: view.name }), h('span', { class: 'actions' }, buttons)),
    h('progress', { max: Math.max(view.size, 1), value: view.state === 'done' || view.state === 'processing' ? Math.max(view.size, 1) : view.loaded, 'aria-label': `Upload of ${view.name}` }),
    h('div', { class: view.state === 'failed' ? 'figures error-text' : 'figures', text: figures }));
}

async function startUploads() {
  if (uploading) return;
  uploading = true;
  try {
    let item;
    while ((item = uploads.find((candidate) => candidate.state === 'waiting'))) await send(item);
  } finally {
    uploading = false;
  }
}

async function send(item) {
  item.state = 'uploading';
  item.loaded = 0;
  item.samples = [{ time: performance.now(), loaded: 0 }];
  uploadsChanged();
  const path = `/admin/models/${encodeURIComponent(item.type)}/${encodeURIComponent(item.file.name)}${item.overwrite ? '?overwrite=true' : ''}`;
  let shown = 0;
  const request = upload(path, item.file, {
    headers: { 'Content-Type': 'application/octet-stream' },
    onProgress: (loaded) => {
      const now = performance.now();
      item.loaded = loaded;
      item.samples.push({ time: now, loaded });
      // Speed over the last five seconds.
      while (item.samples.length > 2 && now - item.samples[0].time > 5000) item.samples.shift();
      if (loaded >= item.file.size) item.state = 'processing';
      if (now - shown > 250 || item.state === 'processing') {
        shown = now;
        uploadsChanged();
      }
    },
  });
  item.abort = request.abort;
  try {
    await request.promise;
    item.state = 'done';
    toast(`Uploaded ${item.file.name}`);
  } catch (error) {
    if (item.state === 'cancelled') return;
    item.state = error.status === 409 ? 'exists' : 'failed';
    item.error = error.message;
  } finally {
    item.abort = null;
    uploadsChanged();
  }
}

function cancelUpload(item) {
  const running = item.state === 'uploading';
  item.state = 'cancelled';
  item.error = 'Cancelled';
  if (running) item.abort?.();
  uploadsChanged();
}

function retryUpload(item, overwrite) {
  item.overwrite = overwrite;
  item.state = 'waiting';
  item.error = undefined;
  uploadsChanged();
  startUploads();
}

function dismissUpload(item) {
  uploads.splice(uploads.indexOf(item), 1);
  uploadsChanged();
}

// MARK: Install from a link

function installCard(signal) {
  const url = h('input', {
    name: 'url', required: true, autocomplete: 'off', spellcheck: 'false',
    placeholder: 'owner/repo/model.safetensors, a Civitai link, or https://…',
  });
  const type = h('select', { name: 'type' },
    h('option', { value: '', text: 'As the site says (else checkpoint)' }),
    MODEL_TYPES.map((entry) => h('option', { value: entry.id, text: entry.label })));
  const name = h('input', { name: 'name', autocomplete: 'off', spellcheck: 'false', placeholder: 'the file\'s own name' });
  const sha256 = h('input', { name: 'sha256', autocomplete: 'off', spellcheck: 'false', placeholder: 'optional: checked after the download' });
  const message = h('p', { class: 'error-text', role: 'alert', hidden: true });
  const list = h('ul', { class: 'uploads installs', 'aria-label': 'Installs' });
  const form = h('form', { class: 'stack' },
    h('p', { class: 'muted', text: 'sdbox downloads the file itself, resumes it after a dropped connection or a restart, checks its sha256 and registers it.' }),
    field('Link', url),
    field('Type', type),
    field('Name', name),
    field('sha256', sha256),
    message,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', text: 'Install' })));
  let installs = [];
  const render = () => syncChildren(list, installs.map(installView), (view) => view.id, renderInstall);
  const refresh = async () => {
    installs = (await api('/admin/models/installs', { signal })).installs;
    render();
  };
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    message.hidden = true;
    const button = form.querySelector('button');
    button.disabled = true;
    const body = { url: url.value.trim() };
    if (type.value) body.type = type.value;
    if (name.value.trim()) body.name = name.value.trim();
    if (sha256.value.trim()) body.sha256 = sha256.value.trim();
    try {
      await api('/admin/models/install', { method: 'POST', body });
      url.value = '';
      name.value = '';
      sha256.value = '';
      await refresh();
    } catch (error) {
      message.textContent = error.message;
      message.hidden = false;
    } finally {
      button.disabled = false;
    }
  });
  poll(signal, 1000, refresh);
  return h('section', { class: 'card stack', 'aria-labelledby': 'install-title' },
    h('h2', { id: 'install-title', text: 'Install from a link' }), form, list);
}

/** What an install's row shows; rows are rebuilt only when this changes. */
function installView(install) {
  return {
    id: install.id, name: install.name || install.url, state: install.state, error: install.error, type: install.type,
    received: install.receivedBytes, total: install.totalBytes, speed: Math.round(install.bytesPerSecond || 0),
    left: install.secondsLeft, attempts: install.attempts,
  };
}

function renderInstall(view) {
  let figures;
  switch (view.state) {
    case 'queued': figures = 'Waiting for a download slot'; break;
    case 'downloading': {
      const of = view.total ? ` of ${format.bytes(view.total)} (${Math.floor((view.received / view.total) * 100)}%)` : '';
      const speed = view.speed > 0 ? ` · ${format.bytes(view.speed)}/s` : '';
      const left = view.left != null ? ` · ${format.duration(view.left)} left` : '';
      const retried = view.attempts > 1 ? ` · attempt ${view.attempts}` : '';
      figures = `${format.bytes(view.received)}${of}${speed}${left}${retried}`;
      break;
    }
    case 'verifying': figures = `${format.bytes(view.received)} downloaded · checking and placing it…`; break;
    case 'succeeded': figures = `Installed ${format.bytes(view.received)} as ${typeLabel(view.type)}`; break;
    case 'cancelled': figures = 'Cancelled'; break;
    default: figures = view.error || 'Failed';
  }
  const finished = ['succeeded', 'failed', 'cancelled'].includes(view.state);
  const button = finished
    ? h('button', { type: 'button', class: 'small quiet', 'aria-label': `Dismiss ${view.name}`, text: 'Dismiss', onclick: () => dropInstall(view, false) })
    : h('button', { type: 'button', class: 'small', 'aria-label': `Cancel install of ${view.name}`, text: 'Cancel', onclick: () => dropInstall(view, true) });
  const done = view.state === 'succeeded' || view.state === 'verifying';
  return h('li', { class: 'upload install stack', dataset: { state: view.state, install: view.id } },
    h('div', { class: 'spread' }, h('span', { class: 'mono', text: view.name }), h('span', { class: 'actions' }, button)),
    h('progress', { max: Math.max(view.total || 1, 1), value: done ? Math.max(view.total || 1, 1) : view.received, 'aria-label': `Install of ${view.name}` }),
    h('div', { class: view.state === 'failed' ? 'figures error-text' : 'figures', text: figures }));
}

async function dropInstall(view, cancel) {
  try {
    await api(`/admin/models/installs/${encodeURIComponent(view.id)}`, { method: 'DELETE' });
    if (cancel) toast(`Cancelled the install of ${view.name}`);
    document.querySelector(`li[data-install="${CSS.escape(view.id)}"]`)?.remove();
  } catch (error) {
    toast(`Could not ${cancel ? 'cancel' : 'dismiss'} ${view.name}: ${error.message}`, { error: true });
  }
}

// MARK: Register

function registerCard() {
  const type = typeSelect('type');
  const path = h('input', { name: 'path', required: true, placeholder: '/srv/models/model.safetensors', autocomplete: 'off', spellcheck: 'false' });
  const message = h('p', { class: 'error-text', role: 'alert', hidden: true });
  const form = h('form', { class: 'stack' },
    h('p', { class: 'muted', text: 'A model file already on this box or a mounted share: sdbox links it into its models folder, without copying it.' }),
    field('Type', type),
    field('Path on the box', path),
    message,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', text: 'Register' })));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    message.hidden = true;
    const button = form.querySelector('button');
    button.disabled = true;
    try {
      const model = await api('/admin/models/register', { method: 'POST', body: { type: type.value, path: path.value.trim() } });
      toast(`Registered ${model?.name ?? path.value}`);
      path.value = '';
    } catch (error) {
      message.textContent = error.message;
      message.hidden = false;
    } finally {
      button.disabled = false;
    }
  });
  return h('section', { class: 'card', 'aria-labelledby': 'register-title' }, h('h2', { id: 'register-title', text: 'Register a path' }), form);
}

function stylesCard(signal) {
  const rows = h('tbody', {});
  const message = h('p', { class: 'error-text', role: 'alert', hidden: true });
  const row = (style = {}) => {
    const input = (name, value, label) => h('input', { name, value: value ?? '', 'aria-label': label, autocomplete: 'off', spellcheck: 'false' });
    const tr = h('tr', { dataset: { style: style.name ?? '' } },
      h('td', {}, input('name', style.name, 'Style name')),
      h('td', {}, input('prompt', style.prompt, 'Prompt ({prompt} is where the request\'s prompt goes)')),
      h('td', {}, input('negative_prompt', style.negative_prompt, 'Negative prompt')),
      h('td', {}, h('button', { type: 'button', class: 'danger small', text: 'Remove', onclick: () => tr.remove() })));
    return tr;
  };
  // Editable once the saved styles are in, so that loading them never replaces an edit.
  const add = h('button', { type: 'button', text: 'Add a style', disabled: true, onclick: () => rows.append(row()) });
  const save = h('button', { type: 'submit', class: 'primary', text: 'Save styles', disabled: true });
  const form = h('form', { class: 'stack' },
    h('p', { class: 'muted', text: 'Named prompts, as A1111\'s styles.csv: listed by /sdapi/v1/prompt-styles, applied by workers started with --styles-file {data_dir}/styles.csv.' }),
    h('div', { class: 'table-wrap' }, h('table', { class: 'styles' },
      h('thead', {}, h('tr', {}, ['Name', 'Prompt', 'Negative prompt', ''].map((name) => h('th', { scope: 'col', text: name })))),
      rows)),
    message,
    h('div', { class: 'actions' }, add, save));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    message.hidden = true;
    save.disabled = true;
    const styles = [...rows.querySelectorAll('tr')].map((tr) => {
      const value = (name) => tr.querySelector(`[name="${name}"]`).value;
      return { name: value('name').trim(), prompt: value('prompt') || null, negative_prompt: value('negative_prompt') || null };
    }).filter((style) => style.name || style.prompt || style.negative_prompt);
    try {
      const saved = await api('/admin/styles', { method: 'PUT', body: styles });
      replace(rows, ...saved.map(row));
      toast(`Saved ${saved.length} style${saved.length === 1 ? '' : 's'}`);
    } catch (error) {
      message.textContent = error.message;
      message.hidden = false;
    } finally {
      save.disabled = false;
    }
  });
  api('/admin/styles', { signal }).then((styles) => {
    replace(rows, ...styles.map(row));
    add.disabled = false;
    save.disabled = false;
  }).catch((error) => {
    message.textContent = error.message;
    message.hidden = false;
  });
  return h('section', { class: 'card', 'aria-labelledby': 'styles-title' }, h('h2', { id: 'styles-title', text: 'Prompt styles' }), form);
}
