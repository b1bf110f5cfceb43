"""Migration manifests: which database migrations a release carries, and whether each can go back.

Format (JSON): ``{"migrations": [{"id": "0007", "reversible": true}, ...]}``, in the order they
run. The pipeline's migration gate reads it at each release's tag through GitHub's contents API,
or takes it from the deploy event (``announce --migrations``), which wins when both exist.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Migration:
    id: str
    reversible: bool

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "reversible": self.reversible}


def manifest_from_json(data: Any, where: str) -> tuple[Migration, ...]:
    """Validate a decoded manifest; ``ValueError`` names the place (``where``) and the field at fault."""
    if not isinstance(data, dict) or not isinstance(data.get("migrations"), list):
        raise ValueError(f'{where}: expected an object with a "migrations" list')
    out = []
    for i, item in enumerate(data["migrations"]):
        at = f"{where}: migrations[{i}]"
        if not isinstance(item, dict):
            raise ValueError(f"{at}: expected an object with id and reversible")
        mid, reversible = item.get("id"), item.get("reversible")
        if not isinstance(mid, str | int) or isinstance(mid, bool) or str(mid) == "":
            raise ValueError(f"{at}.id: expected a non-empty string")
        if not isinstance(reversible, bool):
            raise ValueError(f"{at}.reversible: expected true or false")
        out.append(Migration(str(mid), reversible))
    ids = [m.id for m in out]
    repeated = sorted({m for m in ids if ids.count(m) > 1})
    if repeated:
        raise ValueError(f"{where}: migration ids repeat: {', '.join(repeated)}")
    return tuple(out)


def parse_manifest(text: str, where: str) -> tuple[Migration, ...]:
    """Parse a manifest's JSON text; ``ValueError`` names ``where``, the line or the field at fault."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}:{exc.lineno}: invalid JSON: {exc.msg}") from exc
    return manifest_from_json(data, where)


def manifest_to_json(migrations: tuple[Migration, ...] | None) -> list[dict[str, Any]] | None:
    return None if migrations is None else [m.as_dict() for m in migrations]


def tag_problem(tag: str) -> str | None:
    """Why ``tag`` cannot name a release, or ``None``: Git and image tags hold no whitespace."""
    if not tag:
        return "must not be empty"
    if any(c.isspace() or not c.isprintable() for c in tag):
        return "must not contain whitespace or control characters"
    return None
