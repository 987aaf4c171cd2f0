#!/usr/bin/env python3
"""Writes a small random-weight checkpoint (or, with --upscaler, an ESRGAN) that stable-diffusion.cpp loads.

Its images are NOISE, not pictures: it is for tests and demos without a download. Run it with the Python
of the sdcpp venv (it needs numpy and safetensors): `<venv>/bin/python make_test_checkpoint.py OUT.safetensors`.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sdcpp_worker.test_checkpoint import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
