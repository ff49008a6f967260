"""Exceptions shared by the driver library, the CLI and the manager."""

from __future__ import annotations


class DigiError(Exception):
    """An error a user can act on; its message names the object, the field and the fix."""


class Conflict(DigiError):
    """The object moved on since it was read (HTTP 409); re-read and retry."""


class Forbidden(DigiError):
    """The caller may not touch that object (HTTP 403)."""


class NotFound(DigiError):
    """The object does not exist (HTTP 404)."""
