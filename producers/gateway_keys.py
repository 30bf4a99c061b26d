"""API keys of the ingest gateway: which department a caller speaks for.

The keys file (TOML) keeps only SHA-256 digests of the keys, never the keys themselves:

    [departments.market_regulation]
    key_sha256 = ["3f1c...", "a9b2..."]

``xbus gateway new-key --department D`` makes a key, prints it once and adds its digest.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import tomllib
from pathlib import Path

from xbus.errors import ConfigurationError


def digest(key: str) -> str:
    """The SHA-256 hex digest of a key."""
    return hashlib.sha256(key.encode()).hexdigest()


class GatewayKeys:
    """Which department each key's digest belongs to."""

    def __init__(self, departments: dict[str, list[str]]) -> None:
        self._by_digest = {d: dep for dep, digests in departments.items() for d in digests}

    @classmethod
    def load(cls, path: Path) -> GatewayKeys:
        """Read a keys file; a missing file means no keys (every call is refused)."""
        if not path.exists():
            return cls({})
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"{path}: not valid TOML: {exc}") from exc
        departments: dict[str, list[str]] = {}
        for department, entry in data.get("departments", {}).items():
            digests = entry.get("key_sha256", []) if isinstance(entry, dict) else None
            if not isinstance(digests, list) or not all(
                isinstance(d, str) and len(d) == 64 for d in digests
            ):
                raise ConfigurationError(
                    f"{path}: departments.{department}.key_sha256 must be a list of SHA-256 "
                    "hex digests"
                )
            departments[department] = digests
        return cls(departments)

    def department_of(self, key: str) -> str | None:
        """The department ``key`` speaks for, or None for an unknown key."""
        presented = digest(key)
        for known, department in self._by_digest.items():
            if hmac.compare_digest(known, presented):
                return department
        return None


def new_key(path: Path, department: str) -> str:
    """Make a key for ``department``, add its digest to the keys file, return the key."""
    key = f"xbk_{secrets.token_urlsafe(32)}"
    existing = (
        path.read_text(encoding="utf-8")
        if path.exists()
        else ("# API keys of the xbus ingest gateway: SHA-256 digests only.\n")
    )
    data = tomllib.loads(existing)
    digests = data.get("departments", {}).get(department, {}).get("key_sha256", [])
    digests.append(digest(key))
    data.setdefault("departments", {})[department] = {"key_sha256": digests}
    lines = [line for line in existing.splitlines() if line.startswith("#")]
    for dep, entry in sorted(data["departments"].items()):
        quoted = ", ".join(f'"{d}"' for d in entry["key_sha256"])
        lines += ["", f"[departments.{dep}]", f"key_sha256 = [{quoted}]"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o600)
    return key
