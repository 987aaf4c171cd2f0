// "Send to playground": parameters handed from one page to the playground's form, once.

const STORAGE = 'sdbox.playground.handoff';

/** Opens the playground with `parameters` (an A1111 request or a result's parameters) in its form. */
export function sendToPlayground(kind, parameters) {
  sessionStorage.setItem(STORAGE, JSON.stringify({ kind, parameters }));
  location.hash = '#playground';
}

/** The parameters handed over, if any; they are handed over only once. */
export function takeHandoff() {
  const text = sessionStorage.getItem(STORAGE);
  sessionStorage.removeItem(STORAGE);
  try { return text ? JSON.parse(text) : null; } catch { return null; }
}
