"""The engine: one stable-diffusion.cpp model, one job at a time, with A1111's progress, interrupt and skip."""

import ctypes
import json
import threading
import time

import stable_diffusion_cpp as sd_cpp
from stable_diffusion_cpp import StableDiffusion

from . import images
from .a1111 import Fields, GenerationRequest, format_number, job_timestamp
from .errors import InputError


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
        self.generation = threading.Lock()
        self.state_lock = threading.Lock()
        self.state = JobState()
        self.options_lock = threading.Lock()
        self.options = {
            "sd_vae": "Automatic", "CLIP_stop_at_last_layers": 1, "samples_format": "png",
            "eta_noise_seed_delta": 0,
        }
        started = time.monotonic()
        self.model = StableDiffusion(
            model_path=checkpoint.path, lora_model_dir=lora_dir or "", n_threads=threads, verbose=True,
        )
        self.load_seconds = time.monotonic() - started
        # One callback for the life of the process: the binding would otherwise register a callback object
        # per call, which stable-diffusion.cpp could call after Python freed it.
        self._progress_callback = sd_cpp.sd_progress_callback(self._on_step)
        sd_cpp.sd_set_progress_callback(self._progress_callback, ctypes.c_void_p(0))

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
        info = request.info(infotexts, self.state.timestamp)
        return {"images": encoded, "parameters": request.parameters, "info": json.dumps(info)}

    def _sample(self, request, number, init_image, mask):
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

    def upscale(self, body):
        """`POST /sdapi/v1/extra-single-image`: an upscale as A1111's extras tab makes it."""
        fields = Fields(body)
        source = images.decode(fields.get("image", None, str), "image")
        for face_restorer in ("gfpgan_visibility", "codeformer_visibility"):
            if fields.get(face_restorer, 0.0, float) > 0:
                raise InputError(f"{face_restorer}: face restoration is not available in the sdcpp worker")
        first = fields.get("upscaler_1", "None", str)
        second = fields.get("upscaler_2", "None", str)
        visibility = fields.get("extras_upscaler_2_visibility", 0.0, float) if second != "None" else 0.0
        self.upscalers.check(first)
        self.upscalers.check(second)
        width, height, crop, note = self._upscale_target(fields, source)
        text = {"postprocessing": f"{note}, Postprocess upscaler: {first}"}
        if visibility > 0:
            text["postprocessing"] += f", Postprocess upscaler 2: {second}"
        if "parameters" in source.info:
            text["parameters"] = source.info["parameters"]
        result = source  # A1111 leaves the image as it is without a first upscaler
        if first != "None":
            with self.generation:
                with self.state_lock:
                    self.state = JobState("extras", 1, 1, 0)
                try:
                    result = self.upscalers.upscale(source, first, width, height)
                    if visibility > 0:
                        result = images.blend(result, self.upscalers.upscale(source, second, width, height), visibility)
                finally:
                    with self.state_lock:
                        self.state.active = False
            if crop is not None:
                left, top = (result.width - crop[0]) // 2, (result.height - crop[1]) // 2
                result = result.crop((left, top, left + crop[0], top + crop[1]))
        return {"html_info": f"<p>{text['postprocessing']}</p>", "image": images.encode_png(result, text)}

    @staticmethod
    def _upscale_target(fields, source):
        """(width, height) to upscale to, the (width, height) to crop to or None, and the infotext note.

        resize_mode 0 scales by `upscaling_resize`; 1 scales to cover `upscaling_resize_w` x `_h` and crops
        the overflow (or stretches to it when `upscaling_crop` is false).
        """
        if fields.integer("resize_mode", 0, 0, 1) == 0:
            factor = fields.get("upscaling_resize", 2.0, float)
            if not 1 <= factor <= 8:
                raise InputError("field 'upscaling_resize' must be between 1 and 8")
            width, height = int(source.width * factor) // 8 * 8, int(source.height * factor) // 8 * 8
            target = (width, height, None, f"Postprocess upscale by: {format_number(factor)}")
        else:
            size = (fields.integer("upscaling_resize_w", 512, 8, 8192), fields.integer("upscaling_resize_h", 512, 8, 8192))
            note = f"Postprocess upscale to: {size[0]}x{size[1]}"
            if fields.get("upscaling_crop", True, bool):
                scale = max(size[0] / source.width, size[1] / source.height)
                target = (round(source.width * scale), round(source.height * scale), size, note)
            else:
                target = (*size, None, note)
        if max(target[0], target[1]) > 8192:
            raise InputError(f"the upscaled image would be {target[0]}x{target[1]}; the largest side allowed is 8192")
        return target
