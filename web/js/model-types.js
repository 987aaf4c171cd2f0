// The kinds of model sdbox manages (`type` in `/models` and `/admin/models`), as the pages name them.

export const MODEL_TYPES = [
  { id: 'stableDiffusion', label: 'Checkpoints' },
  { id: 'sdVae', label: 'VAEs' },
  { id: 'lora', label: 'LoRAs' },
  { id: 'controlNet', label: 'ControlNets' },
  { id: 'embedding', label: 'Embeddings' },
  { id: 'upscaler', label: 'Upscalers' },
];

export function typeLabel(id) {
  return MODEL_TYPES.find((type) => type.id === id)?.label ?? id;
}

/** A model status as a badge tone. */
export function statusTone(status) {
  return { loaded: 'ok', loading: 'info', registering: 'info', failed: 'bad', deleted: 'warn' }[status] ?? '';
}
