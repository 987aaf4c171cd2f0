// Users: the people who sign in with a password (POST /login, the original's login), with their role;
// add one or set a password, remove one (its sessions end). Passwords are never shown back.

import { api } from '../api.js';
import { badge, confirmDialog, field, h, replace, toast } from '../dom.js';
import * as format from '../format.js';

export const title = 'Users';

export async function mount(view, { signal }) {
  const rows = h('tbody', {});
  const table = h('div', { class: 'table-wrap' }, h('table', { class: 'users' },
    h('thead', {}, h('tr', {}, ['User', 'Role', 'Added', 'Actions'].map((name) => h('th', { scope: 'col', text: name })))),
    rows));
  const load = async () => {
    const users = await api('/admin/users', { signal });
    replace(rows, ...users.map((user) => h('tr', { dataset: { user: user.userName } },
      h('td', { class: 'mono', text: user.userName }),
      h('td', {}, badge(user.role, user.role === 'admin' ? 'accent' : '')),
      h('td', { class: 'nowrap', text: format.dateTime(user.createdAt) }),
      h('td', {}, h('button', {
        type: 'button', class: 'danger small', 'aria-label': `Remove ${user.userName}`, text: 'Remove',
        onclick: async () => {
          if (!await confirmDialog({ title: `Remove ${user.userName}?`, message: 'Their sessions end at once.', confirmLabel: 'Remove', danger: true })) return;
          await api(`/admin/users/${encodeURIComponent(user.userName)}`, { method: 'DELETE' });
          toast(`Removed ${user.userName}`);
          load();
        },
      })))));
    if (users.length === 0) replace(rows, h('tr', {}, h('td', { colspan: 4, class: 'muted', text: 'No users yet: API keys work without them.' })));
  };

  const name = h('input', { name: 'userName', required: true, autocomplete: 'off', spellcheck: 'false' });
  const password = h('input', { name: 'password', type: 'password', required: true, minlength: 8, autocomplete: 'new-password' });
  const role = h('select', { name: 'role' }, h('option', { value: 'user', text: 'user' }), h('option', { value: 'admin', text: 'admin' }));
  const message = h('p', { class: 'error-text', role: 'alert', hidden: true });
  const form = h('form', { class: 'stack' },
    h('p', { class: 'muted', text: 'A user signs in with POST /login and sends the token it gets in the Token header (or as a bearer key). The same name again sets a new password and role.' }),
    field('User name', name), field('Password (8 characters or more)', password), field('Role', role), message,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', text: 'Save user' })));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    message.hidden = true;
    try {
      const user = await api('/admin/users', { method: 'POST', body: { userName: name.value.trim(), password: password.value, role: role.value } });
      toast(`Saved ${user.userName}`);
      password.value = '';
      load();
    } catch (error) {
      message.textContent = error.message;
      message.hidden = false;
    }
  });

  view.append(
    h('div', { class: 'page-head' }, h('div', {}, h('h1', { tabindex: -1, text: 'Users' }),
      h('p', { class: 'subtitle', text: 'People who sign in with a password' }))),
    h('div', { class: 'grid two' },
      h('section', { class: 'card', 'aria-labelledby': 'users-title' }, h('h2', { id: 'users-title', text: 'Users' }), table),
      h('section', { class: 'card', 'aria-labelledby': 'add-user-title' }, h('h2', { id: 'add-user-title', text: 'Add a user or set a password' }), form)));
  await load();
}
