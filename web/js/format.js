// Numbers, sizes, times and durations as people read them.

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function bytes(count) {
  if (count === null || count === undefined || Number.isNaN(count)) return '—';
  let value = Number(count);
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 || value >= 100 ? 0 : 1)} ${UNITS[unit]}`;
}

export function mebibytes(count) {
  return bytes(Number(count) * 1024 * 1024);
}

/** A duration in seconds: `850 ms`, `12.4 s`, `3 min 05 s`, `2 h 10 min`. */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '—';
  if (seconds < 1) return `${Math.max(0, Math.round(seconds * 1000))} ms`;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${String(Math.floor(seconds % 60)).padStart(2, '0')} s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ${String(minutes % 60).padStart(2, '0')} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

/**
 * A time from the API as a Date: an ISO 8601 string, Unix seconds, or seconds since 2001-01-01 (what
 * Foundation's JSONEncoder writes for a Date by default, as `/workers` does for `since`).
 */
export function parseTime(value) {
  if (value === null || value === undefined || value === '') return null;
  if (typeof value === 'string') {
    const parsed = Date.parse(value);
    return Number.isNaN(parsed) ? null : new Date(parsed);
  }
  const seconds = Number(value);
  if (!Number.isFinite(seconds)) return null;
  // Unix seconds are above 1.2e9 since 2008; reference-date seconds stay below that until 2039.
  return new Date((seconds < 1.2e9 ? seconds + 978307200 : seconds) * 1000);
}

/** A date and time in the reader's locale. */
export function dateTime(value) {
  const date = value instanceof Date ? value : parseTime(value);
  return date ? date.toLocaleString() : '—';
}

/** How long ago: `just now`, `12 s ago`, `3 min ago`, … */
export function ago(value, now = Date.now()) {
  const date = value instanceof Date ? value : parseTime(value);
  if (!date) return '—';
  const seconds = (now - date.getTime()) / 1000;
  if (seconds < 2) return 'just now';
  return `${duration(seconds).replace(/ \d+ (s|min)$/, '')} ago`;
}
