"""Template context: the logged-in user's portal membership (None for staff and anonymous users)."""

from typing import Any

from django.http import HttpRequest


def portal_membership(request: HttpRequest) -> dict[str, Any]:
    return {"membership": getattr(request, "portal_membership", None)}
