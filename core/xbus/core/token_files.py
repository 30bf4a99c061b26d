"""Files of bearer-token digests: which principal (a department calling the ingest gateway, a
subscriber reading its stream) each token speaks for.

A file keeps only SHA-256 digests of the tokens, never the tokens themselves, one table per
principal under one section:

    [<section>.<principal>]
    <field> = ["3f1c...", "a9b2..."]
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import tomllib
from pathlib import Path

from xbus.core.errors import ConfigurationError

# The names topics take (gov.<department>., deliver.<subscriber>.), which are also bare TOML
# keys: a name outside it would write a table header that breaks the whole file.
_PRINCIPAL = re.compile(r"^[a-z][a-z0-9_]*$")


def _read(path: Path) -> dict[str, object]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(
            f"{path}: not valid TOML ({exc}); fix or remove the file, then make the tokens again"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from exc


def digest(token: str) -> str:
    """The SHA-256 hex digest of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


class TokenDigests:
    """Which principal each token's digest belongs to."""

    def __init__(self, principals: dict[str, list[str]]) -> None:
        self._by_digest = {d: name for name, digests in principals.items() for d in digests}

    @classmethod
    def load(cls, path: Path, section: str, field: str) -> TokenDigests:
        """Read a digests file; a missing file means no tokens (every call is refused)."""
        if not path.exists():
            return cls({})
        data = _read(path)
        table = data.get(section, {})
        if not isinstance(table, dict):
            raise ConfigurationError(f"{path}: [{section}] must be a table of {section}")
        principals: dict[str, list[str]] = {}
        for name, entry in table.items():
            digests = entry.get(field, []) if isinstance(entry, dict) else None
            if not isinstance(digests, list) or not all(
                isinstance(d, str) and len(d) == 64 for d in digests
            ):
                raise ConfigurationError(
                    f"{path}: {section}.{name}.{field} must be a list of SHA-256 hex digests"
                )
            principals[name] = digests
        return cls(principals)

    def owner_of(self, token: str) -> str | None:
        """The principal ``token`` speaks for, or None for an unknown token."""
        presented = digest(token)
        for known, name in self._by_digest.items():
            if hmac.compare_digest(known, presented):
                return name
        return None


def add_token(
    path: Path, section: str, field: str, principal: str, *, prefix: str, title: str
) -> str:
    """Make a token for ``principal`` (``prefix`` + 256 random bits), add its digest to the
    file (created with ``# title`` on top, readable by its owner only), return the token.
    Raises ``ConfigurationError`` for a principal that is no valid name, or a file that is
    not valid TOML (named, and left as it is)."""
    if not _PRINCIPAL.match(principal):
        raise ConfigurationError(
            f"{principal!r} is not a valid name: lowercase letters, digits and underscores, "
            "starting with a letter (as in topic names)"
        )
    # Read, and checked as the service will read it, before anything is written.
    TokenDigests.load(path, section, field)
    existing = path.read_text(encoding="utf-8") if path.exists() else f"# {title}\n"
    data = tomllib.loads(existing)
    token = f"{prefix}{secrets.token_urlsafe(32)}"
    digests = data.get(section, {}).get(principal, {}).get(field, [])
    digests.append(digest(token))
    data.setdefault(section, {})[principal] = {field: digests}
    lines = [line for line in existing.splitlines() if line.startswith("#")]
    for name, entry in sorted(data[section].items()):
        quoted = ", ".join(f'"{d}"' for d in entry[field])
        lines += ["", f"[{section}.{name}]", f"{field} = [{quoted}]"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o600)
    return token
