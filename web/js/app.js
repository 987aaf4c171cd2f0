// The page shell: routes `#models`, `#workers`, `#tasks`, `#tasks/<id>`, `#gallery`, `#playground`, `#users` and `#usage` to
// their page modules, marks the current one in the navigation, signs in when sdbox asks for an API key,
// and says when sdbox stops answering.

import { api, apiKey, setAPIKey } from './api.js';
import { h } from './dom.js';
import * as models from './pages/models.js';
import * as workers from './pages/workers.js';
import * as tasks from './pages/tasks.js';
import * as gallery from './pages/gallery.js';
import * as playground from './pages/playground.js';
import * as users from './pages/users.js';
import * as usage from './pages/usage.js';

const pages = { models, workers, tasks, gallery, playground, users, usage };
const main = document.getElementById('main');
let current = null;

function route() {
  const [name = '', ...rest] = decodeURIComponent(location.hash.replace(/^#\/?/, '')).split('/');
  return pages[name] ? { name, params: rest.filter(Boolean) } : { name: 'models', params: [] };
}

async function show({ focus = true } = {}) {
  current?.abort();
  const controller = new AbortController();
  current = controller;
  const { name, params } = route();
  const page = pages[name];
  for (const link of document.querySelectorAll('.top nav a')) {
    if (link.getAttribute('href') === `#${name}`) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  document.title = `${page.title} · sdbox`;
  const view = h('div', { class: 'page', dataset: { page: name } });
  main.replaceChildren(offlineNotice, view);
  offlineNotice.hidden = true;
  try {
    await page.mount(view, { params, signal: controller.signal });
  } catch (error) {
    if (controller.signal.aborted) return;
    view.append(h('p', { class: 'notice error', role: 'alert', text: `This page could not load: ${error.message}` }));
  }
  if (focus && !controller.signal.aborted) view.querySelector('h1')?.focus({ preventScroll: false });
}

// sdbox not answering: said once at the top of the page, cleared by the next good answer.
const offlineNotice = h('p', { class: 'notice error', role: 'alert', hidden: true });
window.addEventListener('sdbox:offline', (event) => {
  offlineNotice.textContent = `sdbox is not answering: ${event.detail?.message ?? 'unknown error'}. Retrying…`;
  offlineNotice.hidden = false;
});
window.addEventListener('sdbox:online', () => { offlineNotice.hidden = true; });

// Sign-in: asked for when any call answers 401.
const login = document.getElementById('login');
const signOut = document.getElementById('sign-out');
signOut.hidden = !apiKey();
signOut.addEventListener('click', () => {
  setAPIKey('');
  signOut.hidden = true;
  show();
});
window.addEventListener('sdbox:unauthorized', () => {
  if (login.open) return;
  current?.abort();
  login.querySelector('[data-error]').hidden = !apiKey();
  login.querySelector('[data-error]').textContent = apiKey() ? 'The key was refused; try another.' : '';
  login.showModal();
});
login.addEventListener('cancel', (event) => event.preventDefault());
login.querySelector('form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const key = new FormData(event.target).get('key').trim();
  setAPIKey(key);
  try {
    await api('/models');
  } catch (error) {
    if (error.status === 401) setAPIKey('');
    const message = login.querySelector('[data-error]');
    message.textContent = error.status === 401 ? 'The key was refused; try another.' : error.message;
    message.hidden = false;
    if (!login.open) login.showModal();
    return;
  }
  login.close();
  event.target.reset();
  signOut.hidden = false;
  show();
});

document.querySelector('[data-skip]').addEventListener('click', (event) => {
  event.preventDefault();
  main.focus();
});

window.addEventListener('hashchange', () => show());
show({ focus: false });
