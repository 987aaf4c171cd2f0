// Playground: txt2img and img2img with A1111's common parameters, run as an async task with live
// progress, the images when done, and the curl command for the same request.

import { api, apiKey } from '../api.js';
import { copyText, field, h, replace, toast } from '../dom.js';
import { takeHandoff } from '../handoff.js';
import { poll } from '../live.js';
import { progressView } from '../progress.js';
import { cancelTask } from './tasks.js';

export const title = 'Playground';

const FORM_STORAGE = 'sdbox.playground.form';
const TASK_STORAGE = 'sdbox.playground.task';
const FINAL = new Set(['succeeded', 'failed', 'cancelled']);

/** Form fields sent as they are, by the type of their value. */
const NUMBER_FIELDS = ['steps', 'cfg_scale', 'width', 'height', 'seed', 'batch_size', 'n_iter', 'denoising_strength'];
const TEXT_FIELDS = ['prompt', 'negative_prompt', 'sampler_name', 'scheduler', 'stable_diffusion_model', 'sd_vae'];
const DEFAULTS = {
  kind: 'txt2img', prompt: '', negative_prompt: '', sampler_name: 'Euler a', scheduler: 'automatic', steps: 20, cfg_scale: 7,
  width: 512, height: 512, seed: -1, batch_size: 1, n_iter: 1, denoising_strength: 0.75, sd_vae: 'Automatic',
};

export async function mount(view, { signal }) {
  const [models, samplers, schedulers] = await Promise.all([
    api('/models', { signal }), api('/sdapi/v1/samplers', { signal }), api('/sdapi/v1/schedulers', { signal }),
  ]);
  const checkpoints = models.filter((model) => model.type === 'stableDiffusion');
  const vaes = models.filter((model) => model.type === 'sdVae');

  const control = {
    stable_diffusion_model: h('select', { name: 'stable_diffusion_model' },
      checkpoints.map((model) => h('option', { value: model.name, text: model.status === 'loaded' ? `${model.name} (loaded)` : model.name }))),
    sd_vae: h('select', { name: 'sd_vae' }, h('option', { value: 'Automatic', text: 'Automatic' }), h('option', { value: 'None', text: 'None' }),
      vaes.map((model) => h('option', { value: model.name, text: model.name }))),
    prompt: h('textarea', { name: 'prompt', rows: 3, placeholder: 'a red fox in the snow, golden hour' }),
    negative_prompt: h('textarea', { name: 'negative_prompt', rows: 2, placeholder: 'blurry, low quality' }),
    sampler_name: h('select', { name: 'sampler_name' }, samplers.map((sampler) => h('option', { value: sampler.name, text: sampler.name }))),
    scheduler: h('select', { name: 'scheduler' }, schedulers.map((scheduler) => h('option', { value: scheduler.name, text: scheduler.label }))),
    steps: h('input', { type: 'number', name: 'steps', min: 1, max: 150, step: 1, required: true }),
    cfg_scale: h('input', { type: 'number', name: 'cfg_scale', min: 1, max: 30, step: 0.5, required: true }),
    width: h('input', { type: 'number', name: 'width', min: 64, max: 4096, step: 8, required: true }),
    height: h('input', { type: 'number', name: 'height', min: 64, max: 4096, step: 8, required: true }),
    seed: h('input', { type: 'number', name: 'seed', id: 'playground-seed', min: -1, step: 1, required: true }),
    batch_size: h('input', { type: 'number', name: 'batch_size', min: 1, max: 16, step: 1, required: true }),
    n_iter: h('input', { type: 'number', name: 'n_iter', min: 1, max: 16, step: 1, required: true }),
    denoising_strength: h('input', { type: 'range', name: 'denoising_strength', min: 0, max: 1, step: 0.05 }),
  };
  const denoisingValue = h('output', { for: 'denoising_strength' });
  const kinds = ['txt2img', 'img2img'].map((kind) => h('input', { type: 'radio', name: 'kind', value: kind }));
  const initInput = h('input', { type: 'file', name: 'init_image', accept: 'image/png,image/jpeg,image/webp' });
  const initPreview = h('img', { class: 'init-preview', alt: 'The input image', hidden: true });
  let initImage = null; // base64 PNG/JPEG/WebP, without the data: prefix
  const img2imgFields = h('fieldset', { class: 'fields' },
    h('legend', { text: 'Input image' }),
    field('Image', initInput, { class: 'wide' }), initPreview,
    h('label', { class: 'wide' }, h('span', {}, 'Denoising strength ', denoisingValue), control.denoising_strength));
  const generate = h('button', { type: 'submit', class: 'primary', text: 'Generate' });
  const cancel = h('button', { type: 'button', class: 'danger', text: 'Cancel', hidden: true });
  const formError = h('p', { class: 'error-text', role: 'alert', hidden: true });
  const randomSeed = h('button', { type: 'button', class: 'small', title: 'A new random seed for each run (-1)', text: 'Random', onclick: () => { control.seed.value = -1; changed(); } });
  const lastSeed = h('button', { type: 'button', class: 'small', title: 'The seed of the last image', text: 'Last', disabled: true });

  const form = h('form', { class: 'card stack', 'aria-label': 'Generation parameters', novalidate: true },
    h('div', { class: 'segmented', role: 'radiogroup', 'aria-label': 'Mode' },
      kinds.map((input) => h('label', {}, input, input.value))),
    h('div', { class: 'fields' },
      field('Model', control.stable_diffusion_model, { class: 'wide' }),
      field('Prompt', control.prompt, { class: 'wide' }),
      field('Negative prompt', control.negative_prompt, { class: 'wide' }),
      field('Sampler', control.sampler_name), field('Scheduler', control.scheduler), field('VAE', control.sd_vae),
      field('Steps', control.steps), field('CFG scale', control.cfg_scale),
      field('Width', control.width), field('Height', control.height),
      h('div', { class: 'field-group span-2' }, h('label', { for: 'playground-seed', text: 'Seed' }), h('div', { class: 'seed' }, control.seed, randomSeed, lastSeed)),
      field('Batch size', control.batch_size), field('Batch count', control.n_iter)),
    img2imgFields,
    formError,
    h('div', { class: 'actions' }, cancel, generate));

  const progress = progressView('Generation progress');
  const progressBox = h('div', { hidden: true }, progress.element);
  const results = h('div', { class: 'images', 'aria-live': 'polite' });
  const resultInfo = h('p', { class: 'muted' });
  const placeholder = h('div', { class: 'result-empty', text: 'Your images appear here.' });
  const curl = h('pre', { class: 'curl', tabindex: 0, 'aria-label': 'curl command' });
  const copy = h('button', { type: 'button', class: 'small', text: 'Copy' });
  view.append(
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', { tabindex: -1, text: 'Playground' }),
        h('p', { class: 'subtitle', text: 'Try a model; every run is a task like any client’s.' }))),
    h('div', { class: 'playground' },
      form,
      h('div', {},
        h('section', { class: 'card stack', 'aria-labelledby': 'result-title' },
          h('div', { class: 'spread' }, h('h2', { id: 'result-title', text: 'Result' }), h('span', { class: 'muted mono', 'data-task': '' })),
          progressBox, placeholder, results, resultInfo),
        h('section', { class: 'card stack', 'aria-labelledby': 'curl-title' },
          h('div', { class: 'spread' }, h('h2', { id: 'curl-title', text: 'The same request with curl' }), copy),
          curl,
          h('p', { class: 'muted', text: 'Synchronous: answers when the images are ready, with their signed URLs in ossUrl.' })))));

  // MARK: Form state

  const kind = () => kinds.find((input) => input.checked)?.value ?? 'txt2img';
  const values = () => {
    const result = { kind: kind() };
    for (const name of TEXT_FIELDS) result[name] = control[name].value;
    for (const name of NUMBER_FIELDS) result[name] = control[name].value === '' ? '' : Number(control[name].value);
    return result;
  };
  const apply = (settings) => {
    for (const input of kinds) input.checked = input.value === settings.kind;
    for (const name of [...TEXT_FIELDS, ...NUMBER_FIELDS]) {
      if (settings[name] === undefined || settings[name] === null) continue;
      const element = control[name];
      if (element.tagName === 'SELECT' && ![...element.options].some((option) => option.value === String(settings[name]))) {
        element.append(h('option', { value: settings[name], text: settings[name] }));
      }
      element.value = settings[name];
    }
  };
  const body = () => {
    const settings = values();
    const request = {};
    for (const name of TEXT_FIELDS) if (settings[name] !== '') request[name] = settings[name];
    for (const name of NUMBER_FIELDS) if (settings[name] !== '') request[name] = settings[name];
    if (request.sd_vae === 'Automatic') delete request.sd_vae;
    if (settings.kind === 'img2img') {
      if (initImage) request.init_images = [initImage];
    } else {
      delete request.denoising_strength;
    }
    return request;
  };
  const changed = () => {
    const settings = values();
    img2imgFields.hidden = settings.kind !== 'img2img';
    denoisingValue.textContent = Number(control.denoising_strength.value).toFixed(2);
    localStorage.setItem(FORM_STORAGE, JSON.stringify(settings));
    curl.textContent = curlCommand(settings.kind, body());
  };

  apply({ ...DEFAULTS, stable_diffusion_model: checkpoints[0]?.name, ...stored() });
  const handoff = takeHandoff();
  if (handoff) {
    const parameters = handoff.parameters ?? {};
    apply({
      ...parameters, kind: handoff.kind === 'img2img' && parameters.init_images ? 'img2img' : 'txt2img',
      sd_vae: parameters.sd_vae ?? parameters.override_settings?.sd_vae,
    });
    if (Array.isArray(parameters.init_images) && parameters.init_images[0]) setInit(parameters.init_images[0].replace(/^data:[^,]*,/, ''));
  }
  function setInit(base64) {
    initImage = base64;
    initPreview.src = `data:image/png;base64,${base64}`;
    initPreview.hidden = false;
  }
  initInput.addEventListener('change', () => {
    const file = initInput.files[0];
    if (!file) return;
    const reader = new FileReader();
    reader.addEventListener('load', () => {
      setInit(String(reader.result).replace(/^data:[^,]*,/, ''));
      changed();
    });
    reader.readAsDataURL(file);
  });
  form.addEventListener('input', changed);
  form.addEventListener('change', changed);
  changed();
  copy.addEventListener('click', async () => {
    try {
      await copyText(curl.textContent);
      toast('Copied the curl command');
    } catch (error) {
      toast(`Could not copy: ${error.message}`, { error: true });
    }
  });

  // MARK: Running

  let watching = null;
  const taskLabel = view.querySelector('[data-task]');
  const watch = (id) => {
    watching?.abort();
    const controller = new AbortController();
    signal.addEventListener('abort', () => controller.abort());
    watching = controller;
    sessionStorage.setItem(TASK_STORAGE, id);
    taskLabel.replaceChildren(h('a', { href: `#tasks/${encodeURIComponent(id)}`, text: `task ${id}` }));
    progressBox.hidden = false;
    placeholder.hidden = true;
    cancel.hidden = false;
    cancel.disabled = false;
    generate.disabled = true;
    replace(results);
    resultInfo.textContent = '';
    progress.update({ status: 'waiting' });
    poll(controller.signal, 500, async () => {
      const state = await api(`/tasks/${encodeURIComponent(id)}/progress`, { signal: controller.signal });
      progress.update(state);
      if (!FINAL.has(state.status)) return;
      controller.abort();
      await showResult(id);
    });
  };
  const showResult = async (id) => {
    const result = await api(`/tasks/${encodeURIComponent(id)}/result`, { signal });
    cancel.hidden = true;
    generate.disabled = false;
    progressBox.hidden = result.status !== 'failed';
    progress.update(result);
    const seeds = result.info?.all_seeds ?? [];
    replace(results, (result.ossUrl ?? []).map((url, index) => h('figure', {},
      h('a', { href: url, target: '_blank', rel: 'noopener' }, h('img', { src: url, alt: `Generated image ${index + 1}${seeds[index] !== undefined ? `, seed ${seeds[index]}` : ''}` })),
      h('figcaption', { text: seeds[index] !== undefined ? `Seed ${seeds[index]}` : `Image ${index + 1}` }))));
    placeholder.hidden = (result.ossUrl ?? []).length > 0;
    if (result.status === 'failed' || result.error) {
      resultInfo.className = 'error-text';
      resultInfo.textContent = result.error ?? 'The task failed.';
    } else {
      resultInfo.className = 'muted';
      const count = (result.ossUrl ?? []).length;
      resultInfo.textContent = result.status === 'cancelled' ? 'Cancelled.' : `${count} image${count === 1 ? '' : 's'}.`;
    }
    if (seeds.length > 0) {
      lastSeed.disabled = false;
      lastSeed.onclick = () => { control.seed.value = seeds[0]; changed(); };
    }
  };

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    formError.hidden = true;
    const invalid = Object.values(control).find((element) => !element.checkValidity());
    if (invalid) {
      invalid.reportValidity();
      return;
    }
    if (kind() === 'img2img' && !initImage) {
      formError.textContent = 'Choose an input image for img2img.';
      formError.hidden = false;
      initInput.focus();
      return;
    }
    generate.disabled = true;
    try {
      const answer = await api(`/${kind()}`, { method: 'POST', body: body(), headers: { 'Request-Type': 'async' } });
      watch(answer.taskId);
    } catch (error) {
      generate.disabled = false;
      formError.textContent = error.message;
      formError.hidden = false;
      const named = error.body?.field && control[error.body.field];
      if (named) named.focus();
    }
  });
  cancel.addEventListener('click', async () => {
    cancel.disabled = true;
    const id = sessionStorage.getItem(TASK_STORAGE);
    if (id) await cancelTask(id);
  });

  // Back on the page: follow (or show) the last task started here.
  const last = sessionStorage.getItem(TASK_STORAGE);
  if (last) {
    try {
      const state = await api(`/tasks/${encodeURIComponent(last)}/progress`, { signal });
      if (FINAL.has(state.status)) {
        taskLabel.replaceChildren(h('a', { href: `#tasks/${encodeURIComponent(last)}`, text: `task ${last}` }));
        await showResult(last);
      } else {
        watch(last);
      }
    } catch {
      sessionStorage.removeItem(TASK_STORAGE);
    }
  }
}

function stored() {
  try { return JSON.parse(localStorage.getItem(FORM_STORAGE) ?? '{}'); } catch { return {}; }
}

/** The curl command for the same request, synchronous; an img2img input image is read from input.png. */
function curlCommand(kind, body) {
  const auth = apiKey() ? ' \\\n  -H "Authorization: Bearer $SDBOX_API_KEY"' : '';
  const head = `curl -X POST ${location.origin}/${kind}${auth} \\\n  -H 'Content-Type: application/json' \\\n`;
  if (kind === 'img2img' && body.init_images) {
    // A here-document, so that the shell puts the image in; $, ` and \ of the JSON are escaped for it.
    const json = JSON.stringify({ ...body, init_images: ['INIT_IMAGE'] }, null, 2).replace(/[\\$`]/g, '\\$&');
    return `${head}  -d @- <<EOF\n${json.replace('"INIT_IMAGE"', '"$(base64 -w0 input.png)"')}\nEOF`;
  }
  return `${head}  -d '${JSON.stringify(body).replace(/'/g, "'\\''")}'`;
}
