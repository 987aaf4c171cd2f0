// Small DOM helpers: elements built from data (text is always set as text, never parsed as HTML),
// rows kept in step with a list, toasts and confirmation dialogs.

/**
 * Creates an element. `attributes` keys: `class`, `text`, `on<event>` handlers, `dataset`, boolean and
 * string attributes (false, null and undefined leave the attribute out). Children may be strings,
 * nodes, or arrays of them.
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name === 'class') element.className = value;
    else if (name === 'text') element.textContent = value;
    else if (name === 'dataset') Object.assign(element.dataset, value);
    else if (name.startsWith('on') && typeof value === 'function') element.addEventListener(name.slice(2), value);
    else if (name === 'value' || name === 'checked' || name === 'selected') element[name] = value;
    else element.setAttribute(name, value === true ? '' : String(value));
  }
  append(element, children);
  return element;
}

function append(parent, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(parent, child);
    else parent.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces an element's children. */
export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
}

/**
 * Keeps `container`'s children in step with `items`: one child per key, rebuilt with `render(item)` only
 * when the item changed (so focus and text selection survive a refresh that changed nothing).
 */
export function syncChildren(container, items, key, render) {
  const existing = new Map();
  for (const child of container.children) if (child.dataset.key !== undefined) existing.set(child.dataset.key, child);
  let previous = null;
  for (const item of items) {
    const id = String(key(item));
    const signature = JSON.stringify(item);
    let node = existing.get(id);
    if (!node || node.dataset.signature !== signature) {
      const fresh = render(item);
      fresh.dataset.key = id;
      fresh.dataset.signature = signature;
      if (node) node.replaceWith(fresh);
      node = fresh;
    }
    existing.delete(id);
    const expected = previous ? previous.nextElementSibling : container.firstElementChild;
    if (expected !== node) container.insertBefore(node, expected);
    previous = node;
  }
  for (const node of existing.values()) node.remove();
  for (const node of [...container.children]) if (node.dataset.key === undefined) node.remove();
}

/** A short message in the corner, read out by screen readers. */
export function toast(message, { error = false } = {}) {
  const box = document.getElementById('toasts');
  const item = h('div', { class: error ? 'toast error' : 'toast', text: message });
  box.append(item);
  setTimeout(() => item.remove(), error ? 8000 : 4000);
}

/**
 * Asks for confirmation in a modal dialog. `body` is extra content (e.g. a checkbox); answers the
 * dialog's form when confirmed, else null.
 */
export function confirmDialog({ title, message, confirmLabel = 'OK', danger = false, body = null }) {
  return new Promise((resolve) => {
    const form = h('form', { method: 'dialog', class: 'stack' },
      h('h2', { id: 'confirm-title', text: title }),
      h('p', { text: message }),
      body,
      h('div', { class: 'actions' },
        h('button', { type: 'submit', value: 'cancel', text: 'Cancel' }),
        h('button', { type: 'submit', value: 'confirm', class: danger ? 'danger solid' : 'primary', text: confirmLabel })));
    const dialog = h('dialog', { 'aria-labelledby': 'confirm-title' }, form);
    document.body.append(dialog);
    dialog.addEventListener('close', () => {
      resolve(dialog.returnValue === 'confirm' ? form : null);
      dialog.remove();
    });
    dialog.showModal();
  });
}

/** A labelled form control: `<label>text <control></label>`. */
export function field(text, control, { class: className } = {}) {
  return h('label', { class: className }, text, control);
}

/** A status badge; `tone` is one of ok, warn, bad, info, accent. */
export function badge(text, tone = '') {
  return h('span', { class: `badge ${tone}`.trim(), text });
}

/** A horizontal bar for `value` of `max`, exposed to assistive technology as a meter. */
export function meter(value, max, label, valueText) {
  const ratio = max > 0 ? Math.min(1, Math.max(0, value / max)) : 0;
  const tone = ratio >= 0.95 ? 'bad' : ratio >= 0.8 ? 'warn' : '';
  return h('div', {
    class: `bar ${tone}`.trim(), role: 'meter', 'aria-label': label, 'aria-valuemin': 0, 'aria-valuemax': max,
    'aria-valuenow': value, 'aria-valuetext': valueText,
  }, h('span', { style: `width: ${(ratio * 100).toFixed(1)}%` }));
}

/** Copies text to the clipboard, also where the Clipboard API is missing (plain HTTP on a LAN address). */
export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  const area = h('textarea', { class: 'visually-hidden', 'aria-hidden': 'true' });
  area.value = text;
  document.body.append(area);
  area.select();
  const copied = document.execCommand('copy');
  area.remove();
  if (!copied) throw new Error('the browser refused to copy');
}
