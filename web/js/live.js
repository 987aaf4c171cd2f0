// Live updates: a page polls the API while it is shown, pausing while the browser tab is hidden.
// Failed polls raise `sdbox:offline` (the page header shows it) and the next good one `sdbox:online`.

/**
 * Calls `fn` now and then `ms` after each call finishes, until `signal` aborts. Calls are skipped
 * while the document is hidden and resume when it is shown again.
 */
export function poll(signal, ms, fn) {
  let timer = null;
  const tick = async () => {
    timer = null;
    if (signal.aborted) return;
    if (!document.hidden) {
      try {
        await fn();
        window.dispatchEvent(new CustomEvent('sdbox:online'));
      } catch (error) {
        if (signal.aborted) return;
        if (error.status !== 401) window.dispatchEvent(new CustomEvent('sdbox:offline', { detail: error }));
      }
    }
    if (!signal.aborted) timer = setTimeout(tick, ms);
  };
  const wake = () => {
    if (!document.hidden && timer !== null) {
      clearTimeout(timer);
      tick();
    }
  };
  document.addEventListener('visibilitychange', wake, { signal });
  signal.addEventListener('abort', () => clearTimeout(timer));
  tick();
}
