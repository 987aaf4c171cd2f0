"""Images in and out of the A1111 API: base64 (with or without a `data:` prefix) and PNGs with infotext."""

import base64
import binascii
import io

from PIL import Image, ImageFilter, ImageOps, PngImagePlugin

from .errors import InputError


def decode(text, field):
    """A base64 image (any format Pillow reads), as A1111 accepts it: raw or as a `data:` URI."""
    if not isinstance(text, str) or not text:
        raise InputError(f"{field} must be a base64-encoded image")
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        data = base64.b64decode(text, validate=False)
        image = Image.open(io.BytesIO(data))
        image.load()
    except (binascii.Error, ValueError, OSError) as error:
        raise InputError(f"{field}: not a readable base64 image ({error})") from None
    return image


def encode_png(image, text=None):
    """Base64 PNG of `image` in RGB, with `text` chunks (A1111 puts its infotext under `parameters`)."""
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG", pnginfo=info)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def fit(image, width, height, resize_mode):
    """Brings an init image to the generation size as A1111's `resize_mode` says.

    0: just resize (stretch); 1: crop and resize (keep the aspect, crop the overflow); 2: resize and fill
    (keep the aspect, fill the borders with the stretched image); 3 (latent upscale) resizes like 0.
    """
    image = image.convert("RGB")
    if image.size == (width, height):
        return image
    if resize_mode == 1:
        return ImageOps.fit(image, (width, height), Image.Resampling.LANCZOS)
    stretched = image.resize((width, height), Image.Resampling.LANCZOS)
    if resize_mode != 2:
        return stretched
    inner = ImageOps.contain(image, (width, height), Image.Resampling.LANCZOS)
    stretched.paste(inner, ((width - inner.width) // 2, (height - inner.height) // 2))
    return stretched


def prepare_mask(mask, width, height, resize_mode, invert, blur):
    """An inpainting mask at the generation size: white is repainted, black kept (A1111's convention)."""
    mask = fit(mask.convert("L"), width, height, resize_mode).convert("L")
    if invert:
        mask = ImageOps.invert(mask)
    if blur > 0:
        mask = mask.filter(ImageFilter.GaussianBlur(blur))
    return mask


def overlay(original, generated, mask):
    """Puts the original back where the mask is black, as A1111 does after inpainting."""
    return Image.composite(generated.convert("RGB"), original.convert("RGB"), mask)


def blend(first, second, visibility):
    """`second` laid over `first` with opacity `visibility` (A1111's second upscaler)."""
    return Image.blend(first.convert("RGB"), second.convert("RGB"), visibility)
