"""A real `recroute.serve.http.serve` process whose encoder refuses any text holding "POISON".

    python tests/serve/poisoned_server.py BUNDLE_DIR PORT MAX_BATCH MAX_WAIT_MS

Used to check that one request's failure inside a micro-batch leaves the others answered.
"""

from __future__ import annotations

import sys

from recroute.errors import DataError
from recroute.serve.batching import BatchSettings
from recroute.serve.bundle import RoutingBundle
from recroute.serve.http import serve


class PoisonedEncoder:
    """The bundle's encoder, except that a text holding "POISON" makes the whole call fail."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.dim = inner, inner.name, inner.dim

    def encode(self, texts, batch_size=None, show_progress=False):
        bad = [t for t in texts if "POISON" in t]
        if bad:
            raise DataError(f"cannot encode {bad[0]!r}")
        return self.inner.encode(texts, batch_size=batch_size)


def main() -> None:
    bundle_dir, port, max_batch, max_wait_ms = sys.argv[1:5]
    bundle = RoutingBundle.load(bundle_dir)
    bundle.encoder = PoisonedEncoder(bundle.encoder)
    serve(bundle, "127.0.0.1", int(port), batching=BatchSettings(True, int(max_batch), float(max_wait_ms)),
          log_level="warning")


if __name__ == "__main__":
    main()
