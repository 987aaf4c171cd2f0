"""sdbox's stable-diffusion.cpp worker: the A1111 API around real diffusion on the CPU (see __main__.py)."""
