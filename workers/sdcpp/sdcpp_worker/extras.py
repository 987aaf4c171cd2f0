"""A1111's extras tab (`extra-single-image`, `extra-batch-images`): upscaling of given images, answered as
sdbox's reference worker answers it (Sources/ReferenceWorker/ReferencePostprocessing.swift)."""

import html

from . import images
from .a1111 import Fields, format_number
from .errors import InputError

MAX_SIDE = 16384


class ExtrasRequest:
    """An extras request read with A1111's defaults: which images, and how to upscale them."""

    def __init__(self, kind, body, upscalers):
        fields = Fields(body)
        if kind == "extra-single-image":
            self.sources = [("image", fields.get("image", None, str))]
        else:
            image_list = fields.get("imageList", None, list)
            if not image_list:
                raise InputError("field 'imageList' must hold at least one {\"data\", \"name\"}")
            self.sources = [
                (f"imageList[{index}].data", item.get("data") if isinstance(item, dict) else None)
                for index, item in enumerate(image_list)
            ]
        for face_restorer in ("gfpgan_visibility", "codeformer_visibility"):
            if fields.get(face_restorer, 0.0, float) > 0:
                raise InputError(f"field '{face_restorer}': face restoration is not available in the sdcpp worker")
        self.resize_mode = fields.integer("resize_mode", 0, 0, 1)
        self.scale = fields.get("upscaling_resize", 2.0, float)
        if not 1 <= self.scale <= 8:
            raise InputError("field 'upscaling_resize' must be between 1 and 8")
        self.target = (fields.integer("upscaling_resize_w", 512, 1, MAX_SIDE), fields.integer("upscaling_resize_h", 512, 1, MAX_SIDE))
        self.crop = fields.get("upscaling_crop", True, bool)
        self.upscaler = fields.get("upscaler_1", "None", str)
        self.second_upscaler = fields.get("upscaler_2", "None", str)
        self.second_visibility = fields.get("extras_upscaler_2_visibility", 0.0, float)
        upscalers.check(self.upscaler)
        upscalers.check(self.second_upscaler)
        self.upscalers = upscalers

    def process(self, text, field):
        """One image upscaled, as a base64 PNG that keeps the input's `parameters` infotext and adds A1111's
        `postprocessing` text; and that text."""
        source = images.decode(text, field)
        output, notes = source, []
        if self.upscaler != "None":
            factor = self.scale
            if self.resize_mode == 1:
                factor = max(self.target[0] / source.width, self.target[1] / source.height)
            width, height = max(1, round(source.width * factor)), max(1, round(source.height * factor))
            if max(width, height) > MAX_SIDE:
                raise InputError(f"{field}: an output of {width}x{height} is too large")
            output = self.upscalers.upscale(source, self.upscaler, width, height)
            if self.second_upscaler != "None" and self.second_visibility > 0:
                second = self.upscalers.upscale(source, self.second_upscaler, width, height)
                output = images.blend(output, second, self.second_visibility)
            if self.resize_mode == 1 and self.crop:
                left, top = (width - self.target[0]) // 2, (height - self.target[1]) // 2
                output = output.crop((left, top, left + self.target[0], top + self.target[1]))
            if self.resize_mode == 1:
                notes.append(f"Postprocess upscale to: {self.target[0]}x{self.target[1]}")
            else:
                notes.append(f"Postprocess upscale by: {format_number(factor)}")
            notes.append(f"Postprocess upscaler: {self.upscaler}")
            if self.second_upscaler != "None" and self.second_visibility > 0:
                notes.append(f"Postprocess upscaler 2: {self.second_upscaler}")
        infotext = ", ".join(notes)
        chunks = {}
        if "parameters" in source.info:
            chunks["parameters"] = source.info["parameters"]
        if infotext:
            chunks["postprocessing"] = infotext
        return images.encode_png(output, chunks), infotext


def html_info(infotext):
    """A1111's `html_info`: the infotext escaped, its lines joined with <br>."""
    return "<p>" + html.escape(infotext).replace("\n", "<br>\n") + "</p>"
