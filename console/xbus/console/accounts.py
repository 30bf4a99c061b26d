"""The people who use the console and what each may do.

Four roles, after the data-sharing rules: the office (the authority that reviews requests,
applies and revokes grants, reads the audit trail), a department (owns its datasets and
answers the requests for them), a subscriber (requests data and sees only its own requests,
never source values) and an operator (reads, changes nothing). A department or subscriber
account speaks for one party, named as in ``bus.yaml``.

Passwords are kept as Argon2id hashes (argon2-cffi's defaults: 64 MiB, three passes), so a
copy of the table does not give the passwords away cheaply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from xbus.console.errors import ConsoleError

LANGUAGES = ("zh-CN", "en")
ACCOUNT_NAME = re.compile(r"^[a-z][a-z0-9_.-]{1,62}$")
PARTY = re.compile(r"^[a-z][a-z0-9_]*$")
MIN_PASSWORD = 12

_hasher = PasswordHasher()


class Role(StrEnum):
    OFFICE = "office"
    DEPARTMENT = "department"
    SUBSCRIBER = "subscriber"
    OPERATOR = "operator"


@dataclass(frozen=True)
class Account:
    """A person's account: its login name, role, the party it speaks for (a department or a
    subscriber; none for the office and operators) and the language of its pages."""

    name: str
    role: Role
    party: str | None = None
    language: str = "zh-CN"

    @property
    def can_change(self) -> bool:
        return self.role is not Role.OPERATOR


def check_account(name: str, role: Role, party: str | None, language: str) -> None:
    """Raises ``ConsoleError`` saying what is wrong with an account's name, party or
    language."""
    if not ACCOUNT_NAME.match(name):
        raise ConsoleError(
            f"account name {name!r}: 2 to 63 lower-case letters, digits, '_', '.' or '-', "
            "starting with a letter"
        )
    if role in (Role.DEPARTMENT, Role.SUBSCRIBER):
        if not party or not PARTY.match(party):
            raise ConsoleError(
                f"a {role.value} account names the {role.value} it speaks for "
                "(lower-case letters, digits and '_', as in bus.yaml)"
            )
    elif party:
        raise ConsoleError(f"an {role.value} account speaks for no party; drop {party!r}")
    if language not in LANGUAGES:
        raise ConsoleError(f"language {language!r}: one of {', '.join(LANGUAGES)}")


def hash_password(password: str) -> str:
    """The Argon2id hash of ``password``; ``ConsoleError`` if it is shorter than 12
    characters."""
    if len(password) < MIN_PASSWORD:
        raise ConsoleError(f"a password has at least {MIN_PASSWORD} characters")
    return _hasher.hash(password)


def password_matches(stored_hash: str, password: str) -> bool:
    """Whether ``password`` is the one ``stored_hash`` was made from."""
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# Checked against when the account does not exist, so that a login takes as long for an
# unknown name as for a wrong password and does not tell which names exist.
DECOY_HASH = _hasher.hash("no account has this password, it only takes time to check")
