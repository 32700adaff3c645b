"""Base class for errors shown to the user as one clear line (no traceback)."""

from __future__ import annotations


class UserError(Exception):
    """Something the user gave was wrong; the message says what, where, and what to do."""
