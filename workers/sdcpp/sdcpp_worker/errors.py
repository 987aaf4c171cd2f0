"""Errors the worker answers with a 4xx status instead of failing."""


class InputError(Exception):
    """A request the worker refuses (HTTP 422, like A1111's validation errors); the message says why."""


class NotFound(Exception):
    """A sampler, scheduler or upscaler the worker does not have (HTTP 404, as A1111 answers)."""
