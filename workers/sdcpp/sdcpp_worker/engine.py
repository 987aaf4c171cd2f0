"""The engine: one stable-diffusion.cpp model, one job at a time, with A1111's progress, interrupt and skip."""

import ctypes
import json
import threading
import time

import stable_diffusion_cpp as sd_cpp
from stable_diffusion_cpp import StableDiffusion

from . import images
from .a1111 import GenerationRequest, job_timestamp
from .errors import InputError
from .extras import ExtrasRequest, html_info


class JobState:
    """What `GET /sdapi/v1/progress` reports: A1111's `shared.state` for the job in progress."""

    def __init__(self, job="", job_count=0, images_per_job=1, steps=0):
        self.active = bool(job)
        self.job = job
        self.job_count = job_count
        self.images_per_job = images_per_job
        self.job_no = 0
        self.image_no = 0
        self.step = 0
        self.steps = steps
        self.interrupted = False
        self.skipped = False
        self.timestamp = job_timestamp() if job else "0"
        self.started = time.monotonic()

    def fraction(self):
        if not self.active or self.job_count == 0:
            return 0.0
        within_image = self.step / self.steps if self.steps else 0.0
        within_job = (self.image_no + within_image) / self.images_per_job
        return min((self.job_no + within_job) / self.job_count, 1.0)

    def progress(self):
        fraction = self.fraction()
        elapsed = time.monotonic() - self.started
        return {
            "progress": fraction,
            "eta_relative": elapsed / fraction - elapsed if fraction > 0 else 0.0,
            "state": {
                "skipped": self.skipped, "interrupted": self.interrupted, "stopping_generation": False,
                "job": self.job, "job_count": self.job_count, "job_timestamp": self.timestamp,
                "job_no": self.job_no, "sampling_step": self.step, "sampling_steps": self.steps,
            },
            "current_image": None,
            "textinfo": None,
        }


class Engine:
    """Runs txt2img, img2img and upscales on one loaded checkpoint, one at a time (like A1111's queue lock),
    while progress, interrupt and options stay answerable from other threads.

    stable-diffusion.cpp cannot stop inside an image: an interrupt or skip takes effect between images
    (the image being made is finished and returned, as A1111 returns the image it stopped at).
    """

    def __init__(self, checkpoint, upscalers, threads, lora_dir=None):
        self.checkpoint = checkpoint
        self.upscalers = upscalers
        self.threads = threads
        self.lora_dir = lora_dir
        self.generation = threading.Lock()
        self.state_lock = threading.Lock()
        self.state = JobState()
        self.options_lock = threading.Lock()
        self.options = {
            "sd_vae": "Automatic", "CLIP_stop_at_last_layers": 1, "samples_format": "png",
            "eta_noise_seed_delta": 0,
        }
        self.model = None
        self.load_seconds = self._load()
        # One callback for the life of the process: the binding would otherwise register a callback object
        # per call, which stable-diffusion.cpp could call after Python freed it.
        self._progress_callback = sd_cpp.sd_progress_callback(self._on_step)
        sd_cpp.sd_set_progress_callback(self._progress_callback, ctypes.c_void_p(0))

    def _load(self):
        """Loads the checkpoint (again, from the page cache, after an unload); returns the seconds it took."""
        started = time.monotonic()
        self.model = StableDiffusion(
            model_path=self.checkpoint.path, lora_model_dir=self.lora_dir or "", n_threads=self.threads, verbose=True,
        )
        return time.monotonic() - started

    # MARK: Parking

    @property
    def loaded(self):
        return self.model is not None

    def unload(self):
        """Frees the checkpoint and keeps the process (its imports and the upscalers), after the generation
        under way, as A1111's /sdapi/v1/unload-checkpoint."""
        with self.generation:
            if self.model is not None:
                self.model.close()
                self.model = None

    def reload(self):
        """Loads a freed checkpoint back, after the generation under way; nothing when it is loaded."""
        with self.generation:
            if self.model is None:
                self._load()

    # MARK: Progress and control

    def _on_step(self, step, steps, _seconds, _data):
        with self.state_lock:
            if self.state.active and self.state.job in ("txt2img", "img2img"):
                self.state.step = step
                self.state.steps = steps

    def progress(self):
        with self.state_lock:
            return (self.state if self.state.active else JobState()).progress()

    def interrupt(self):
        with self.state_lock:
            if self.state.active:
                self.state.interrupted = True

    def skip(self):
        with self.state_lock:
            if self.state.active:
                self.state.skipped = True

    def current_options(self):
        with self.options_lock:
            options = dict(self.options)
        options["sd_model_checkpoint"] = self.checkpoint.title
        options["sd_checkpoint_hash"] = self.checkpoint.sha256
        return options

    def set_options(self, changes):
        """Merges options; the checkpoint cannot be switched (a worker holds one model)."""
        if not isinstance(changes, dict):
            raise InputError("options must be a JSON object")
        with self.options_lock:
            for key, value in changes.items():
                if key not in ("sd_model_checkpoint", "sd_checkpoint_hash"):
                    self.options[key] = value

    # MARK: Generation

    def generate(self, kind, body):
        """Runs a txt2img or img2img request and answers as A1111 does."""
        with self.options_lock:
            options = dict(self.options)
        request = GenerationRequest(kind, body, self.checkpoint, options)
        init_image, mask = self._inputs(request)
        with self.generation:
            # A freed checkpoint comes back first, as A1111 reloads it for the next generation.
            if self.model is None:
                self._load()
            with self.state_lock:
                self.state = JobState(kind, request.iterations, request.batch_size, request.steps)
            try:
                return self._run(request, init_image, mask)
            finally:
                with self.state_lock:
                    self.state.active = False

    def _inputs(self, request):
        if request.kind != "img2img":
            return None, None
        size = (request.width, request.height)
        init_image = images.fit(images.decode(request.init_image, "init_images"), *size, request.resize_mode)
        if request.mask is None:
            return init_image, None
        mask = images.prepare_mask(
            images.decode(request.mask, "mask"), *size, request.resize_mode, request.mask_invert, request.mask_blur
        )
        return init_image, mask

    def _run(self, request, init_image, mask):
        encoded, infotexts = [], []
        for iteration in range(request.iterations):
            with self.state_lock:
                self.state.job_no = iteration
                self.state.skipped = False
            for index in range(request.batch_size):
                with self.state_lock:
                    if self.state.interrupted or self.state.skipped:
                        break
                    self.state.image_no = index
                    self.state.step = 0
                number = iteration * request.batch_size + index
                image = self._sample(request, number, init_image, mask)
                infotext = request.infotext(number)
                encoded.append(images.encode_png(image, {"parameters": infotext}))
                infotexts.append(infotext)
            with self.state_lock:
                if self.state.interrupted:
                    break
        with self.state_lock:
            timestamp = self.state.timestamp
        info = request.info(infotexts, timestamp)
        return {"images": encoded, "parameters": request.parameters, "info": json.dumps(info)}

    def _sample(self, request, number, init_image, mask):
        if init_image is not None and request.denoising_strength == 0:
            return init_image  # nothing to denoise: A1111 gives the init image back
        arguments = dict(
            prompt=request.prompt, negative_prompt=request.negative_prompt, clip_skip=request.clip_skip,
            width=request.width, height=request.height, cfg_scale=request.cfg_scale,
            sample_method=request.sample_method, scheduler=request.engine_scheduler or "default",
            sample_steps=request.steps, eta=request.eta, seed=request.seed_of(number), batch_count=1,
        )
        if init_image is not None:
            arguments.update(init_image=init_image, strength=request.denoising_strength)
            if mask is not None:
                arguments["mask_image"] = mask
        result = self.model.generate_image(**arguments)
        if not result:
            raise RuntimeError("stable-diffusion.cpp returned no image (see the worker's log)")
        image = result[0].convert("RGB")
        if image.size != (request.width, request.height):
            raise RuntimeError(f"stable-diffusion.cpp returned a {image.width}x{image.height} image (see the worker's log)")
        return images.overlay(init_image, image, mask) if mask is not None else image

    # MARK: Extras

    def postprocess(self, kind, body):
        """`extra-single-image` or `extra-batch-images`: upscales as A1111's extras tab, one job at a time."""
        request = ExtrasRequest(kind, body, self.upscalers)
        outputs, infotext = [], ""
        with self.generation:
            with self.state_lock:
                self.state = JobState("extras", len(request.sources), 1, 0)
            try:
                for number, (field, text) in enumerate(request.sources):
                    with self.state_lock:
                        self.state.job_no = number
                    image, infotext = request.process(text, field)
                    outputs.append(image)
            finally:
                with self.state_lock:
                    self.state.active = False
        if kind == "extra-single-image":
            return {"html_info": html_info(infotext), "image": outputs[0]}
        return {"html_info": html_info(infotext), "images": outputs}
