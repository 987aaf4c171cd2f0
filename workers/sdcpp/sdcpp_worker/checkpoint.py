"""The checkpoint file a worker serves and the names and hashes A1111 reports for it."""

import hashlib
import os
import threading


class Checkpoint:
    """A model file; its sha256 is computed in the background while the engine loads it.

    A1111 names a checkpoint by its file name and a short hash, the first 10 hex digits of the sha256; its
    title is "<file name> [<short hash>]".
    """

    def __init__(self, path):
        self.path = os.path.abspath(path)
        self.file_name = os.path.basename(self.path)
        self.model_name = os.path.splitext(self.file_name)[0]
        self._sha256 = None
        self._hashing = threading.Thread(target=self._hash, name="checkpoint-hash", daemon=True)
        self._hashing.start()

    def _hash(self):
        digest = hashlib.sha256()
        with open(self.path, "rb") as file:
            while chunk := file.read(8 << 20):
                digest.update(chunk)
        self._sha256 = digest.hexdigest()

    @property
    def sha256(self):
        """The file's sha256, waiting for the background hash if it is not done."""
        self._hashing.join()
        return self._sha256

    @property
    def short_hash(self):
        return self.sha256[:10]

    @property
    def title(self):
        return f"{self.file_name} [{self.short_hash}]"

    def sd_model(self):
        """The entry of `GET /sdapi/v1/sd-models`."""
        return {
            "title": self.title, "model_name": self.model_name, "hash": self.short_hash, "sha256": self.sha256,
            "filename": self.path, "config": None,
        }
