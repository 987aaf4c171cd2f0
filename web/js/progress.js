// A task's live progress (`GET /tasks/{id}/progress`) as a bar and a sentence.

import { h } from './dom.js';
import * as format from './format.js';

/** A progress bar; `update(progress)` takes the answer of `/tasks/{id}/progress`. */
export function progressView(label) {
  const bar = h('progress', { max: 100, value: 0, 'aria-label': label });
  const text = h('p', { class: 'muted', 'aria-live': 'polite', text: 'Waiting…' });
  const element = h('div', { class: 'stack' }, bar, text);
  const update = (progress) => {
    text.textContent = describe(progress);
    if (progress.status === 'waiting') {
      bar.removeAttribute('value'); // indeterminate while waiting
    } else {
      bar.value = Math.round((progress.progress ?? 0) * 100);
    }
  };
  return { element, update };
}

function describe(progress) {
  const state = progress.state ?? {};
  switch (progress.status) {
    case 'waiting': {
      const place = progress.queuePosition ? `, number ${progress.queuePosition} in line` : '';
      const eta = progress.etaRelative > 0 ? ` · done in about ${format.duration(progress.etaRelative)}` : '';
      return `Queued${place}${eta}`;
    }
    case 'running': {
      const percent = Math.round((progress.progress ?? 0) * 100);
      const steps = state.sampling_steps ? ` · step ${state.sampling_step} of ${state.sampling_steps}` : '';
      const images = state.job_count > 1 ? ` · image ${Math.min(state.job_no + 1, state.job_count)} of ${state.job_count}` : '';
      const eta = progress.etaRelative > 0 ? ` · ${format.duration(progress.etaRelative)} left` : '';
      return progress.progress > 0 ? `${percent}%${steps}${images}${eta}` : 'Starting: the worker is loading the model…';
    }
    case 'succeeded': return 'Done';
    case 'failed': return 'Failed';
    case 'cancelled': return 'Cancelled';
    default: return progress.status ?? '';
  }
}
