"""``python -m watchdog.api``: print the API's OpenAPI document (committed as docs/openapi.json)."""

from __future__ import annotations

import json
import sys
from importlib.resources import files

from watchdog.api import ApiContext, create_api
from watchdog.clock import RealClock
from watchdog.config import parse_config
from watchdog.store import Store


def openapi_document() -> dict[str, object]:
    """The document for any configuration: tokens and limits do not change its shape."""
    text = files("watchdog.demo").joinpath("demo.yaml").read_text()
    cfg = parse_config(text, "demo.yaml", env={})
    store = Store.open("sqlite:///:memory:")
    try:
        return create_api(ApiContext(cfg, store, RealClock(), writer=None)).openapi()  # type: ignore[arg-type]
    finally:
        store.close()


if __name__ == "__main__":
    json.dump(openapi_document(), sys.stdout, indent=2)
    sys.stdout.write("\n")
