// The kinds of model sdbox manages (`type` in `/models` and `/admin/models`), as the pages name them.

export const MODEL_TYPES = [
  { id: 'stableDiffusion', label: 'Checkpoints', one: 'checkpoint' },
  { id: 'sdVae', label: 'VAEs', one: 'VAE' },
  { id: 'lora', label: 'LoRAs', one: 'LoRA' },
  { id: 'controlNet', label: 'ControlNets', one: 'ControlNet' },
  { id: 'embedding', label: 'Embeddings', one: 'embedding' },
  { id: 'upscaler', label: 'Upscalers', one: 'upscaler' },
];

export function typeLabel(id) {
  return MODEL_TYPES.find((type) => type.id === id)?.label ?? id;
}

/** A model status as a badge tone. */
export function statusTone(status) {
  return { loaded: 'ok', loading: 'info', registering: 'info', failed: 'bad', deleted: 'warn' }[status] ?? '';
}
