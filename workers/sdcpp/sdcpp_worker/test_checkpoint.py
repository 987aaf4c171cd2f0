"""Random-weight models that stable-diffusion.cpp loads: for tests and demos without a download.

The checkpoint has the layout of SDXS-512-DS (a tiny SD 1.x UNet without middle block, the CLIP ViT-L/14
text encoder, and a TAESD autoencoder), which stable-diffusion.cpp recognises by its tensor names. Its
weights are random: it runs real diffusion, but its images are coloured noise, not pictures of the prompt.

The upscaler has the layout of Real-ESRGAN x4 (RRDBNet) with one block. Its weights are set so that it
upscales almost like nearest-neighbour (plus a little noise), so its output still resembles its input.

Both are deterministic: the same seed writes the same bytes.
"""

import argparse
import os
import sys

import numpy as np
from safetensors.numpy import save_file

FLOAT = np.float16
NOTICE = "random weights for tests: its images are noise, not pictures"


class Weights:
    """Collects named tensors drawn from one seeded generator."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.tensors = {}

    def random(self, name, shape, fan_in):
        values = self.rng.standard_normal(shape, dtype=np.float32) * (1.0 / np.sqrt(fan_in))
        self.tensors[name] = values.astype(FLOAT)

    def constant(self, name, shape, value):
        self.tensors[name] = np.full(shape, value, dtype=FLOAT)

    def linear(self, name, inputs, outputs, bias=True):
        self.random(name + ".weight", (outputs, inputs), inputs)
        if bias:
            self.constant(name + ".bias", (outputs,), 0)

    def conv(self, name, inputs, outputs, kernel=3, bias=True):
        self.random(name + ".weight", (outputs, inputs, kernel, kernel), inputs * kernel * kernel)
        if bias:
            self.constant(name + ".bias", (outputs,), 0)

    def norm(self, name, channels):
        self.constant(name + ".weight", (channels,), 1)
        self.constant(name + ".bias", (channels,), 0)


# MARK: UNet (SDXS-512-DS: SD 1.x, channel_mult 1,2,4, one res block per level, attention at 1/2 and 1/4)

MODEL_CHANNELS = 320
CONTEXT_DIM = 768
HEADS = 8


def res_block(w, name, inputs, outputs):
    w.norm(name + ".in_layers.0", inputs)
    w.conv(name + ".in_layers.2", inputs, outputs)
    w.linear(name + ".emb_layers.1", MODEL_CHANNELS * 4, outputs)
    w.norm(name + ".out_layers.0", outputs)
    w.conv(name + ".out_layers.3", outputs, outputs)
    if inputs != outputs:
        w.conv(name + ".skip_connection", inputs, outputs, kernel=1)


def spatial_transformer(w, name, channels):
    w.norm(name + ".norm", channels)
    w.conv(name + ".proj_in", channels, channels, kernel=1)
    block = name + ".transformer_blocks.0"
    for attention, context in (("attn1", channels), ("attn2", CONTEXT_DIM)):
        w.linear(f"{block}.{attention}.to_q", channels, channels, bias=False)
        w.linear(f"{block}.{attention}.to_k", context, channels, bias=False)
        w.linear(f"{block}.{attention}.to_v", context, channels, bias=False)
        w.linear(f"{block}.{attention}.to_out.0", channels, channels)
    w.linear(block + ".ff.net.0.proj", channels, channels * 4 * 2)
    w.linear(block + ".ff.net.2", channels * 4, channels)
    for norm in ("norm1", "norm2", "norm3"):
        w.norm(f"{block}.{norm}", channels)
    w.conv(name + ".proj_out", channels, channels, kernel=1)


def unet(w):
    """Mirrors the block layout stable-diffusion.cpp builds for a tiny UNet (its `UnetModelBlock`)."""
    prefix = "model.diffusion_model."
    multipliers = (1, 2, 4)
    attention_at = (2, 4)
    w.linear(prefix + "time_embed.0", MODEL_CHANNELS, MODEL_CHANNELS * 4)
    w.linear(prefix + "time_embed.2", MODEL_CHANNELS * 4, MODEL_CHANNELS * 4)
    w.conv(prefix + "input_blocks.0.0", 4, MODEL_CHANNELS)
    skips = [MODEL_CHANNELS]
    channels, index, scale = MODEL_CHANNELS, 0, 1
    for level, multiplier in enumerate(multipliers):
        index += 1
        res_block(w, f"{prefix}input_blocks.{index}.0", channels, multiplier * MODEL_CHANNELS)
        channels = multiplier * MODEL_CHANNELS
        if scale in attention_at:
            spatial_transformer(w, f"{prefix}input_blocks.{index}.1", channels)
        skips.append(channels)
        index += 1  # a tiny UNet skips one index after each level's res block
        if level != len(multipliers) - 1:
            index += 1
            w.conv(f"{prefix}input_blocks.{index}.0.op", channels, channels)
            skips.append(channels)
            scale *= 2
    index = 0
    for level in reversed(range(len(multipliers))):
        multiplier = multipliers[level]
        for block in range(2):
            skip = skips.pop()
            res_block(w, f"{prefix}output_blocks.{index}.0", channels + skip, multiplier * MODEL_CHANNELS)
            channels = multiplier * MODEL_CHANNELS
            upsample = 1
            if scale in attention_at:
                spatial_transformer(w, f"{prefix}output_blocks.{index}.1", channels)
                upsample = 2
            if level > 0 and block == 1:
                index += 1
                if index == 2:
                    upsample = 1
                w.conv(f"{prefix}output_blocks.{index}.{upsample}.conv", channels, channels)
                scale //= 2
            index += 1
    w.norm(prefix + "out.0", channels)
    w.conv(prefix + "out.2", channels, 4)


# MARK: Text encoder (CLIP ViT-L/14, as SD 1.x checkpoints hold it)


def clip_text_model(w):
    prefix = "cond_stage_model.transformer.text_model."
    width, layers = 768, 12
    w.random(prefix + "embeddings.token_embedding.weight", (49408, width), 1)
    w.random(prefix + "embeddings.position_embedding.weight", (77, width), 1)
    for layer in range(layers):
        name = f"{prefix}encoder.layers.{layer}"
        for projection in ("q_proj", "k_proj", "v_proj", "out_proj"):
            w.linear(f"{name}.self_attn.{projection}", width, width)
        w.norm(name + ".layer_norm1", width)
        w.norm(name + ".layer_norm2", width)
        w.linear(name + ".mlp.fc1", width, width * 4)
        w.linear(name + ".mlp.fc2", width * 4, width)
    w.norm(prefix + "final_layer_norm", width)


# MARK: Autoencoder (TAESD; an SDXS checkpoint keeps it under first_stage_model.)


def tae_block(w, name, channels):
    for conv in ("conv.0", "conv.2", "conv.4"):
        w.conv(f"{name}.{conv}", channels, channels)


def taesd(w):
    prefix = "first_stage_model."
    channels = 64
    encoder = prefix + "encoder.layers."
    w.conv(encoder + "0", 3, channels)
    tae_block(w, encoder + "1", channels)
    index = 2
    for _ in range(3):
        w.conv(f"{encoder}{index}", channels, channels, bias=False)  # stride 2
        index += 1
        for _ in range(3):
            tae_block(w, f"{encoder}{index}", channels)
            index += 1
    w.conv(f"{encoder}{index}", channels, 4)
    decoder = prefix + "decoder.layers."
    w.conv(decoder + "0", 4, channels)
    index = 2  # 1 is a ReLU
    for _ in range(3):
        for _ in range(3):
            tae_block(w, f"{decoder}{index}", channels)
            index += 1
        index += 1  # an upsample
        w.conv(f"{decoder}{index}", channels, channels, bias=False)
        index += 1
    tae_block(w, f"{decoder}{index}", channels)
    w.conv(f"{decoder}{index + 1}", channels, 3)


def write_checkpoint(path, seed=0):
    """Writes the random SDXS-style checkpoint to `path` and returns its number of parameters."""
    w = Weights(seed)
    unet(w)
    clip_text_model(w)
    taesd(w)
    save_file(w.tensors, path, metadata={"format": "pt", "sdbox": f"SDXS-style test checkpoint, seed {seed}; {NOTICE}"})
    return sum(t.size for t in w.tensors.values())


# MARK: Upscaler (Real-ESRGAN x4 layout, one RRDB block)


def write_upscaler(path, seed=0):
    """Writes a one-block RRDBNet x4 that upscales about like nearest-neighbour; returns its parameter count."""
    features, growth = 64, 32
    w = Weights(seed)

    def near_identity(name, inputs, outputs, noise=0.01):
        weight = w.rng.standard_normal((outputs, inputs, 3, 3), dtype=np.float32) * noise
        for channel in range(min(3, inputs, outputs)):
            weight[channel, channel, 1, 1] += 1
        w.tensors[name + ".weight"] = weight.astype(np.float32)
        w.tensors[name + ".bias"] = np.zeros((outputs,), dtype=np.float32)

    near_identity("conv_first", 3, features)
    for rdb in (1, 2, 3):
        for conv in range(1, 6):
            inputs = features + (conv - 1) * growth
            outputs = features if conv == 5 else growth
            name = f"body.0.rdb{rdb}.conv{conv}"
            w.tensors[name + ".weight"] = (w.rng.standard_normal((outputs, inputs, 3, 3), dtype=np.float32) * 0.001)
            w.tensors[name + ".bias"] = np.zeros((outputs,), dtype=np.float32)
    for name in ("conv_body",):
        w.tensors[name + ".weight"] = np.zeros((features, features, 3, 3), dtype=np.float32)
        w.tensors[name + ".bias"] = np.zeros((features,), dtype=np.float32)
    for name in ("conv_up1", "conv_up2", "conv_hr"):
        near_identity(name, features, features)
    near_identity("conv_last", features, 3)
    save_file(w.tensors, path, metadata={"format": "pt", "sdbox": f"test upscaler, seed {seed}; near-nearest-neighbour x4"})
    return sum(t.size for t in w.tensors.values())


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="make_test_checkpoint.py",
        description=(
            "Write a small random-weight checkpoint that stable-diffusion.cpp loads (SDXS-style tiny UNet + "
            "CLIP-L + TAESD, about 880 MB). It runs real diffusion, but its images are NOISE, not pictures: "
            "it is for tests and demos without a download."
        ),
    )
    parser.add_argument("output", help="the .safetensors file to write")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    parser.add_argument(
        "--upscaler", action="store_true",
        help="write a tiny ESRGAN x4 upscaler (near nearest-neighbour) instead of a checkpoint",
    )
    arguments = parser.parse_args(argv)
    if not arguments.output.endswith(".safetensors"):
        parser.error("the output file must end in .safetensors")
    os.makedirs(os.path.dirname(os.path.abspath(arguments.output)), exist_ok=True)
    if arguments.upscaler:
        parameters = write_upscaler(arguments.output, arguments.seed)
        note = "a test upscaler, about nearest-neighbour x4"
    else:
        parameters = write_checkpoint(arguments.output, arguments.seed)
        note = f"a test checkpoint with {NOTICE}"
    os.chmod(arguments.output, 0o644)
    print(f"wrote {arguments.output}: {note} ({parameters / 1e6:.1f}M parameters, seed {arguments.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
