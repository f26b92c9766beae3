"""How a sign-in finds its user: user names (portal logins are e-mail addresses) match whatever their
case, and django-axes counts failures under the same folded name, so `IT@…` and `it@…` share one count.
"""

import logging
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest

log = logging.getLogger(__name__)


def login_name(value: str) -> str:
    """A user name as stored and compared: without surrounding spaces, lower-case."""
    return value.strip().lower()


def axes_username(request: HttpRequest, credentials: dict[str, Any] | None) -> Any:
    """AXES_USERNAME_CALLABLE: the name a failure counts under, folded like stored user names."""
    field = getattr(settings, "AXES_USERNAME_FORM_FIELD", "username")  # axes sets its default at start
    username = credentials.get(field) if credentials else getattr(request, "data", request.POST).get(field)
    return login_name(username) if isinstance(username, str) else username


class CaseInsensitiveModelBackend(ModelBackend):
    """Django's ModelBackend, but the user name matches in any case.

    Two users whose names differ only in case (left by the migration that lower-cased portal logins)
    are told apart by the exact spelling; any other spelling of such a name signs in no one.
    """

    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> Any:
        User = get_user_model()
        if username is None:
            username = kwargs.get(User.USERNAME_FIELD)
        if username is None or password is None:
            return None
        user = self._find(username)
        if user is None:
            User().set_password(password)  # the hasher's work all the same: timing does not tell who exists
            return None
        if user.check_password(password) and self.user_can_authenticate(user):
            return user
        return None

    async def aauthenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> Any:
        return await sync_to_async(self.authenticate)(request, username, password, **kwargs)

    def _find(self, username: str) -> Any:
        User = get_user_model()
        matches = list(User._default_manager.filter(**{f"{User.USERNAME_FIELD}__iexact": username})[:10])
        if len(matches) <= 1:
            return matches[0] if matches else None
        exact = [user for user in matches if user.get_username() == username]
        if not exact:
            log.warning(
                "Sign-in as %r refused: user names %s differ only in case; rename one in admin › Users.",
                username,
                ", ".join(repr(user.get_username()) for user in matches),
            )
        return exact[0] if exact else None
