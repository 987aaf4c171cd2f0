"""Upscaling as A1111's extras tab does it: a resampling filter, or an ESRGAN model run by
stable-diffusion.cpp, repeated until the image is large enough and then resized to the exact size."""

import ctypes
import ctypes.util
import os

import stable_diffusion_cpp as sd_cpp
from PIL import Image

from .errors import InputError, NotFound

MODEL_EXTENSIONS = (".safetensors", ".pth", ".pt", ".bin", ".gguf")
FILTERS = {"Lanczos": Image.Resampling.LANCZOS, "Nearest": Image.Resampling.NEAREST}
_libc = ctypes.CDLL(ctypes.util.find_library("c"))
_libc.free.argtypes = [ctypes.c_void_p]


class EsrganModel:
    """One ESRGAN model loaded by stable-diffusion.cpp."""

    def __init__(self, path, threads, tile_size=128):
        self.path = path
        self.context = sd_cpp.new_upscaler_ctx(path.encode(), False, False, threads, tile_size)
        if not self.context:
            raise InputError(f"stable-diffusion.cpp could not load the upscaler {path}")
        self.scale = sd_cpp.get_upscale_factor(self.context)

    def upscale(self, image):
        """The image enlarged by the model's own scale."""
        data = image.convert("RGB").tobytes()
        buffer = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        source = sd_cpp.sd_image_t(
            width=image.width, height=image.height, channel=3, data=ctypes.cast(buffer, ctypes.POINTER(ctypes.c_uint8))
        )
        result = sd_cpp.upscale(self.context, source, self.scale)
        if not result.data:
            raise RuntimeError(f"stable-diffusion.cpp failed to upscale with {self.path}")
        try:
            size = result.width * result.height * result.channel
            pixels = ctypes.string_at(result.data, size)
            mode = {1: "L", 3: "RGB", 4: "RGBA"}[result.channel]
            return Image.frombytes(mode, (result.width, result.height), pixels).convert("RGB")
        finally:
            _libc.free(ctypes.cast(result.data, ctypes.c_void_p))

    def close(self):
        if self.context:
            sd_cpp.free_upscaler_ctx(self.context)
            self.context = None


class Upscalers:
    """The upscalers a worker offers: "None", the Lanczos and Nearest filters, and every ESRGAN model in
    `<models_dir>/ESRGAN` or given with `--upscaler`, named by its file name without extension. The model
    last used stays loaded."""

    def __init__(self, models_dir, extra_paths, threads):
        self.threads = threads
        self.paths = {}
        folder = os.path.join(models_dir, "ESRGAN") if models_dir else None
        if folder and os.path.isdir(folder):
            for name in sorted(os.listdir(folder)):
                if name.lower().endswith(MODEL_EXTENSIONS):
                    self.paths[os.path.splitext(name)[0]] = os.path.join(folder, name)
        for path in extra_paths:
            self.paths[os.path.splitext(os.path.basename(path))[0]] = os.path.abspath(path)
        self.loaded = None

    def listing(self):
        """`GET /sdapi/v1/upscalers`."""
        entries = [{"name": "None", "model_name": None, "model_path": None, "model_url": None, "scale": 4}]
        entries += [{"name": name, "model_name": None, "model_path": None, "model_url": None, "scale": 4} for name in FILTERS]
        entries += [
            {"name": name, "model_name": "ESRGAN", "model_path": path, "model_url": None, "scale": 4}
            for name, path in self.paths.items()
        ]
        return entries

    def check(self, name):
        if name != "None" and name not in FILTERS and name not in self.paths:
            names = ", ".join(entry["name"] for entry in self.listing())
            raise NotFound(f"could not find upscaler named '{name}' (this worker has {names})")

    def model(self, name):
        if self.loaded is None or self.loaded.path != self.paths[name]:
            if self.loaded is not None:
                self.loaded.close()
                self.loaded = None
            self.loaded = EsrganModel(self.paths[name], self.threads)
        return self.loaded

    def upscale(self, image, name, width, height):
        """`image` brought to `width` x `height` by upscaler `name` (unchanged by "None")."""
        self.check(name)
        if name == "None":
            return image
        if name in FILTERS:
            return image.resize((width, height), FILTERS[name])
        model = self.model(name)
        for _ in range(3):
            if image.width >= width and image.height >= height:
                break
            image = model.upscale(image)
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.LANCZOS)
        return image
