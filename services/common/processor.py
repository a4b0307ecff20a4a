"""The simulated card processor's sandbox (its client library, as the order and payment services
would use a real processor's SDK): card tokens and decisions.

A real shop never keeps card numbers: the processor's vault takes the number once and answers
with a token, and every later step (the saga's events, the outbox, the payment record) carries
only the token and the last four digits. The sandbox here follows the test mode of processors
such as Stripe, whose documented test tokens decide the outcome (``tok_visa`` succeeds,
``tok_chargeDeclined`` is declined): a sandbox token says which test outcome it stands for and
is otherwise random, so it reveals nothing about the number it replaced.

Test cards: ``4000000000000002`` is declined; any other number that passed validation succeeds.
"""

from __future__ import annotations

import re
import secrets

DECLINED_CARDS = {"4000000000000002": "card declined"}

_TOKEN = re.compile(r"^tok_(visa|chargeDeclined)_[0-9a-f]{24}$")


def tokenize(card_number: str) -> str:
    """The sandbox token of ``card_number`` (a new one per call)."""
    outcome = "chargeDeclined" if card_number in DECLINED_CARDS else "visa"
    return f"tok_{outcome}_{secrets.token_hex(12)}"


def is_token(value: str) -> bool:
    return isinstance(value, str) and bool(_TOKEN.match(value))


def decision(card_token: str) -> str | None:
    """None if the processor authorizes the card behind ``card_token``, else the decline reason."""
    match = _TOKEN.match(card_token or "")
    if match is None:
        return "invalid card token"
    return "card declined" if match.group(1) == "chargeDeclined" else None
