"""Calendar providers: one interface (`base.CalendarProvider`) and its implementations (`graph.GraphProvider`, …)."""

from sync.providers.base import (
    AuthError,
    CalendarProvider,
    DirectoryUser,
    NotFound,
    PermissionMissing,
    ProviderError,
    TemporaryError,
    Throttled,
    parse_retry_after,
)

__all__ = [
    "AuthError",
    "CalendarProvider",
    "DirectoryUser",
    "NotFound",
    "PermissionMissing",
    "ProviderError",
    "TemporaryError",
    "Throttled",
    "parse_retry_after",
]
