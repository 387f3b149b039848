"""The service layer's errors; the API maps each to its HTTP status (``status``).

    ServiceError
     ├── Invalid          422  a field's value cannot be honoured (the message names the field)
     ├── Rejected         400  an upload refused (unsafe archive); the message names the member
     │    └── TooLarge    413  a body over a configured cap
     ├── Unauthorized     401  no or unknown token
     ├── Forbidden        403  authenticated, but not allowed (admin-only action)
     ├── NotFound         404  no such thing, or not visible to the caller
     ├── Conflict         409  clashes with existing state (duplicate name, bad transition)
     └── TooMany          429  over a configured count limit (pending workloads per user/group)

Messages say what to fix; they are shown to users as is.
"""

from __future__ import annotations

__all__ = [
    "Conflict",
    "Forbidden",
    "Invalid",
    "NotFound",
    "Rejected",
    "ServiceError",
    "TooLarge",
    "TooMany",
    "Unauthorized",
]


class ServiceError(Exception):
    status: int = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Invalid(ServiceError):
    status = 422


class Rejected(ServiceError):
    status = 400


class TooLarge(Rejected):
    status = 413


class Unauthorized(ServiceError):
    status = 401


class Forbidden(ServiceError):
    status = 403


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class TooMany(ServiceError):
    status = 429
