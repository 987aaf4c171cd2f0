"""Acceptance test: the `webuiapi` A1111 client from PyPI, unchanged, against a running sdbox.

Usage: python webuiapi_suite.py PORT [--without CHECK ...]

Runs every check, prints `ok CHECK` or `FAIL CHECK: reason` for each, and exits 1 if any failed. The
server must serve the reference worker's demo checkpoint (`demo.safetensors`) alone, at a pace where
150 steps at 512x512 take seconds (so that progress and interrupt can be seen).
"""
import sys
import threading
import time

import webuiapi
from PIL import Image


def main():
    port = int(sys.argv[1])
    without = set(sys.argv[sys.argv.index("--without") + 1:]) if "--without" in sys.argv else set()
    # The constructor calls GET /sdapi/v1/scripts.
    api = webuiapi.WebUIApi(host="127.0.0.1", port=port, sampler="Euler a", steps=4)
    state = {}
    failures = []

    def check(name, run):
        if name in without:
            print(f"skipped {name}")
            return
        try:
            run()
            print(f"ok {name}")
        except Exception as error:  # a failed check is reported, and the others still run
            failures.append(name)
            print(f"FAIL {name}: {error!r}")

    def txt2img():
        result = api.txt2img(prompt="a red fox", negative_prompt="blurry", seed=7, width=64, height=64, steps=3)
        assert len(result.images) == 1 and result.image.size == (64, 64), result.images
        assert result.info["seed"] == 7 and result.info["sd_model_name"] == "demo", result.info
        assert "Negative prompt: blurry" in result.image.info["parameters"], result.image.info
        state["image"] = result.image

    def img2img():
        mask = Image.new("RGB", (64, 64), "white")
        result = api.img2img(images=[state["image"]], mask_image=mask, prompt="a fox in snow", denoising_strength=0.5,
                             width=64, height=64, steps=3, seed=8)
        assert result.image.size == (64, 64) and result.info["seed"] == 8, result.info

    def extra_single_image():
        result = api.extra_single_image(image=state["image"], upscaler_1="Lanczos", upscaling_resize=2)
        assert result.image.size == (128, 128), result.image.size

    def png_info():
        result = api.png_info(state["image"])
        assert "Seed: 7" in result.info, result.info
        assert result.json["parameters"]["Seed"] == "7", result.json

    def sd_models():
        assert [model["model_name"] for model in api.get_sd_models()] == ["demo"]

    def options():
        assert api.get_options()["sd_model_checkpoint"].startswith("demo.safetensors")
        assert api.set_options({"CLIP_stop_at_last_layers": 2}) is None
        assert api.get_options()["CLIP_stop_at_last_layers"] == 2

    def controlnet_model_list():
        assert webuiapi.ControlNetInterface(api).model_list() == []
        assert api.controlnet_version() == 2

    def cmd_flags():
        assert api.custom_get("sdapi/v1/cmd-flags")["api"] is True

    def progress_and_interrupt():
        generation = {}
        thread = threading.Thread(target=lambda: generation.setdefault(
            "result", api.txt2img(prompt="a long one", width=512, height=512, steps=150, n_iter=2)))
        thread.start()
        deadline = time.time() + 30
        progress = api.get_progress()
        while progress["state"]["sampling_step"] < 2:
            assert time.time() < deadline, progress
            time.sleep(0.05)
            progress = api.get_progress()
        assert progress["state"]["sampling_steps"] == 150 and progress["state"]["job_count"] == 2, progress
        assert 0 < progress["progress"] < 1, progress
        assert api.interrupt() == {}
        thread.join(60)
        # Interrupted in its first batch: one image, as A1111 answers.
        assert len(generation["result"].images) == 1, generation
        assert api.skip() == {}

    check("txt2img", txt2img)
    check("img2img", img2img)
    check("extra-single-image", extra_single_image)
    check("png-info", png_info)
    check("sd-models", sd_models)
    check("options", options)
    check("controlnet", controlnet_model_list)
    check("cmd-flags", cmd_flags)
    check("progress-interrupt", progress_and_interrupt)
    print(f"webuiapi checks: {9 - len(failures) - len(without)} ok, {len(failures)} failing, {len(without)} skipped")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
