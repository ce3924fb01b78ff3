"""Write-only values: how a read shows them, and how a write that sends the shown form back
keeps them.

A subscription's callback headers and a process call's headers carry credentials
(``Authorization``, say): reads show their names with ``MASK`` for each value. A client that
reads an object, changes one field and sends it all back (the usual way to edit over a REST
API) would otherwise store ``MASK`` as the credential. So a header sent as ``MASK`` keeps the
value stored under that name; one with no stored value to keep is refused.
"""

from __future__ import annotations

from collections.abc import Mapping

from eventhub import errors

MASK = "********"


def mask(headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` as a read shows them: names, and ``MASK`` for each value."""
    return dict.fromkeys(headers, MASK)


def unmask(sent: Mapping[str, str], stored: Mapping[str, str], where: str) -> dict[str, str]:
    """``sent``, each ``MASK`` value replaced by the value ``stored`` holds under that name
    (header names compare without regard to case). ``where`` names the headers in a refusal."""
    if MASK not in sent.values():
        return dict(sent)
    by_name = {name.lower(): value for name, value in stored.items()}
    out: dict[str, str] = {}
    for name, value in sent.items():
        if value == MASK:
            kept = by_name.get(name.lower())
            if kept is None:
                message = (
                    f"{where}.{name}: {MASK} stands for a stored value, and there is none:"
                    " send the value"
                )
                raise errors.InvalidRequest(message, [errors.Problem(message, f"{where}.{name}")])
            value = kept
        out[name] = value
    return out
