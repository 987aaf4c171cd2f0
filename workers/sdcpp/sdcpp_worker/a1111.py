"""The A1111 side of the worker: its sampler and scheduler names mapped onto stable-diffusion.cpp's, request
fields read with A1111's defaults, and answers (infotext, `info`, `parameters`) in A1111's shapes, as
sdbox's reference worker gives them (Sources/ReferenceWorker/ReferenceRequest.swift)."""

import random
import time

from .errors import InputError, NotFound

VERSION = "sdbox-sdcpp"

# A1111 sampler name, aliases, options (as /sdapi/v1/samplers lists them), stable-diffusion.cpp method.
# Samplers A1111 has and stable-diffusion.cpp has not (DPM++ SDE, LMS, UniPC, ...) are refused by name.
SAMPLERS = [
    ("DPM++ 2M", ["k_dpmpp_2m"], {"scheduler": "karras"}, "dpm++2m"),
    ("Euler a", ["k_euler_a", "k_euler_ancestral"], {"uses_ensd": "True"}, "euler_a"),
    ("Euler", ["k_euler"], {}, "euler"),
    ("Heun", ["k_heun"], {"second_order": "True"}, "heun"),
    ("DPM2", ["k_dpm_2"], {"discard_next_to_last_sigma": "True", "second_order": "True"}, "dpm2"),
    ("DPM++ 2S a", ["k_dpmpp_2s_a"], {"uses_ensd": "True", "second_order": "True"}, "dpm++2s_a"),
    ("LCM", ["k_lcm"], {}, "lcm"),
    ("DPM++ 2M v2", ["dpmpp_2m_v2"], {}, "dpm++2mv2"),
    ("DDIM Trailing", ["ddim_trailing"], {}, "ddim_trailing"),
    ("TCD", ["tcd"], {}, "tcd"),
    ("iPNDM", ["ipndm"], {}, "ipndm"),
    ("iPNDM_v", ["ipndm_v"], {}, "ipndm_v"),
]
ANCESTRAL = {"euler_a", "dpm++2s_a"}

# A1111 scheduler name, label, aliases, default rho, stable-diffusion.cpp scheduler (None: the sampler's own).
SCHEDULERS = [
    ("automatic", "Automatic", None, -1, None),
    ("uniform", "Uniform", None, -1, "discrete"),
    ("karras", "Karras", None, 7.0, "karras"),
    ("exponential", "Exponential", None, -1, "exponential"),
    ("sgm_uniform", "SGM Uniform", ["SGMUniform"], -1, "sgm_uniform"),
    ("kl_optimal", "KL Optimal", None, -1, "kl_optimal"),
    ("align_your_steps", "Align Your Steps", None, -1, "ays"),
    ("simple", "Simple", None, -1, "simple"),
    ("normal", "Normal", None, -1, "discrete"),
    ("gits", "GITS", None, -1, "gits"),
    ("smoothstep", "Smoothstep", None, -1, "smoothstep"),
]


def sampler_list():
    """`GET /sdapi/v1/samplers`."""
    return [{"name": name, "aliases": aliases, "options": options} for name, aliases, options, _ in SAMPLERS]


def scheduler_list():
    """`GET /sdapi/v1/schedulers`."""
    return [
        {"name": name, "label": label, "aliases": aliases, "default_rho": rho, "need_inner_model": False}
        for name, label, aliases, rho, _ in SCHEDULERS
    ]


def find_sampler(requested):
    """(name, options, method) of a sampler named by its name or an alias, in any case."""
    wanted = requested.lower()
    for name, aliases, options, method in SAMPLERS:
        if wanted == name.lower() or wanted in aliases:
            return name, options, method
    names = ", ".join(name for name, _, _, _ in SAMPLERS)
    raise NotFound(f"Sampler not found: '{requested}' (stable-diffusion.cpp offers {names})")


def find_scheduler(requested):
    """(label, engine scheduler) of a scheduler named by its name, label or alias."""
    wanted = requested.lower()
    for name, label, aliases, _, engine in SCHEDULERS:
        if wanted in (name, label.lower()) or wanted in [alias.lower() for alias in aliases or []]:
            return label, engine
    labels = ", ".join(label for _, label, _, _, _ in SCHEDULERS)
    raise NotFound(f"Scheduler not found: '{requested}' (stable-diffusion.cpp offers {labels})")


class Fields:
    """Typed reads of a request body: A1111's default for an absent or null field, 422 for a wrong type."""

    PHRASES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "an array", dict: "an object"}

    def __init__(self, body):
        if not isinstance(body, dict):
            raise InputError("request body must be a JSON object")
        self.body = body

    def get(self, key, default, kind):
        value = self.body.get(key)
        if value is None:
            return default
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if kind is int and isinstance(value, float) and value.is_integer():
            return int(value)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise InputError(f"field '{key}' must be {self.PHRASES[kind]}")
        return value

    def integer(self, key, default, low, high):
        value = self.get(key, default, int)
        if not low <= value <= high:
            raise InputError(f"field '{key}' must be between {low} and {high}")
        return value


def random_seed():
    return random.randrange(0, 4_294_967_296)


def job_timestamp():
    return time.strftime("%Y%m%d%H%M%S", time.gmtime())


def format_number(value):
    """Numbers as A1111 prints them in infotext (Python's str of a float)."""
    return str(float(value))


class GenerationRequest:
    """A txt2img or img2img request with A1111's defaults filled in and mapped onto the engine."""

    def __init__(self, kind, body, checkpoint, options):
        fields = Fields(body)
        self.kind = kind
        self.checkpoint = checkpoint
        self.prompt = fields.get("prompt", "", str)
        self.negative_prompt = fields.get("negative_prompt", "", str)
        self.requested_seed = fields.get("seed", -1, int)
        self.seed = random_seed() if self.requested_seed == -1 else self.requested_seed
        requested_subseed = fields.get("subseed", -1, int)
        self.subseed = random_seed() if requested_subseed == -1 else requested_subseed
        self.steps = fields.integer("steps", 50, 1, 1000)
        self.cfg_scale = fields.get("cfg_scale", 7.0, float)
        # A1111 makes latents of size // 8, so its images are a multiple of 8 in each side.
        self.width = fields.integer("width", 512, 64, 8192) // 8 * 8
        self.height = fields.integer("height", 512, 64, 8192) // 8 * 8
        self.batch_size = fields.integer("batch_size", 1, 1, 64)
        self.iterations = fields.integer("n_iter", 1, 1, 1000)
        requested_sampler = fields.get("sampler_name", None, str) or fields.get("sampler_index", "Euler a", str)
        requested_scheduler = fields.get("scheduler", "Automatic", str)
        for suffix, scheduler in ((" karras", "karras"), (" exponential", "exponential")):
            # A1111 still accepts the names of before v1.9, such as "DPM++ 2M Karras".
            if requested_sampler.lower().endswith(suffix):
                requested_sampler = requested_sampler[: -len(suffix)]
                requested_scheduler = scheduler
        self.sampler_name, sampler_options, self.sample_method = find_sampler(requested_sampler)
        self.scheduler_label, self.engine_scheduler = find_scheduler(requested_scheduler)
        if self.engine_scheduler is None and "scheduler" in sampler_options:
            self.engine_scheduler = find_scheduler(sampler_options["scheduler"])[1]
        self.eta = fields.get("eta", 1.0 if self.sample_method in ANCESTRAL else 0.0, float)
        overrides = Fields(fields.get("override_settings", {}, dict))
        if overrides.get("sd_vae", "Automatic", str) not in ("Automatic", "None", ""):
            raise InputError("override_settings.sd_vae: the sdcpp worker uses the checkpoint's own VAE and cannot load another")
        clip_skip = options.get("CLIP_stop_at_last_layers", 1)
        self.clip_skip = overrides.integer("CLIP_stop_at_last_layers", clip_skip if isinstance(clip_skip, int) else 1, 1, 12)
        if kind == "img2img":
            self.denoising_strength = fields.get("denoising_strength", 0.75, float)
            if not 0 <= self.denoising_strength <= 1:
                raise InputError("field 'denoising_strength' must be between 0 and 1")
            init_images = fields.get("init_images", None, list)
            if not init_images:
                raise InputError("init_images must hold at least one image")
            self.init_image = init_images[0]
            self.mask = fields.get("mask", None, str)
            self.resize_mode = fields.integer("resize_mode", 0, 0, 3)
            self.mask_blur = fields.integer("mask_blur", 4, 0, 256)
            self.mask_invert = fields.integer("inpainting_mask_invert", 0, 0, 1) == 1
        else:
            enable_hr = fields.get("enable_hr", False, bool)
            self.denoising_strength = fields.get("denoising_strength", None, float) if enable_hr else None
            self.init_image = None
            self.mask = None
        self.parameters = self._parameters(body, fields)

    def _parameters(self, body, fields):
        """The request as used, as A1111 returns it in `parameters`."""
        parameters = dict(body)
        parameters.update(
            prompt=self.prompt, negative_prompt=self.negative_prompt, seed=self.requested_seed, steps=self.steps,
            width=self.width, height=self.height, batch_size=self.batch_size, n_iter=self.iterations,
            cfg_scale=self.cfg_scale, sampler_name=self.sampler_name,
        )
        if self.kind == "img2img":
            parameters["denoising_strength"] = self.denoising_strength
            if not fields.get("include_init_images", False, bool):
                parameters["init_images"] = None
                parameters["mask"] = None
        return parameters

    @property
    def image_count(self):
        return self.batch_size * self.iterations

    def seed_of(self, index):
        return self.seed + index

    def infotext(self, index):
        """A1111's infotext of image `index`, as it writes it into the PNG's `parameters` chunk."""
        fields = [
            ("Steps", self.steps), ("Sampler", self.sampler_name), ("Schedule type", self.scheduler_label),
            ("CFG scale", format_number(self.cfg_scale)), ("Seed", self.seed_of(index)),
            ("Size", f"{self.width}x{self.height}"), ("Model hash", self.checkpoint.short_hash),
            ("Model", self.checkpoint.model_name),
        ]
        if self.denoising_strength is not None:
            fields.append(("Denoising strength", format_number(self.denoising_strength)))
        if self.clip_skip > 1:
            fields.append(("Clip skip", self.clip_skip))
        fields.append(("Version", VERSION))
        text = self.prompt
        if self.negative_prompt:
            text += f"\nNegative prompt: {self.negative_prompt}"
        return text + "\n" + ", ".join(f"{key}: {value}" for key, value in fields)

    def info(self, infotexts, timestamp):
        """The `info` object A1111 returns (as a JSON string) with a generation."""
        count = len(infotexts)
        return {
            "prompt": self.prompt, "all_prompts": [self.prompt] * count,
            "negative_prompt": self.negative_prompt, "all_negative_prompts": [self.negative_prompt] * count,
            "seed": self.seed, "all_seeds": [self.seed_of(n) for n in range(count)],
            "subseed": self.subseed, "all_subseeds": [self.subseed + n for n in range(count)],
            "subseed_strength": 0, "width": self.width, "height": self.height,
            "sampler_name": self.sampler_name, "cfg_scale": self.cfg_scale, "steps": self.steps,
            "batch_size": self.batch_size, "restore_faces": False, "face_restoration_model": None,
            "sd_model_name": self.checkpoint.model_name, "sd_model_hash": self.checkpoint.short_hash,
            "sd_vae_name": None, "sd_vae_hash": None, "seed_resize_from_w": -1, "seed_resize_from_h": -1,
            "denoising_strength": self.denoising_strength, "extra_generation_params": {},
            "index_of_first_image": 0, "infotexts": infotexts, "styles": [], "job_timestamp": timestamp,
            "clip_skip": self.clip_skip, "is_using_inpainting_conditioning": False, "version": VERSION,
        }
