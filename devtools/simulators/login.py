"""Microsoft identity platform (Entra ID) look-alike for msal: OpenID discovery and client-credentials tokens.

Serves TLS with a certificate from a trustme CA, because msal refuses plain http. Errors use Entra's
words (`AADSTS…` descriptions, `error_codes`) so client code can be tested against them. The Graph
simulator asks this one whether a bearer token is valid and which application permissions it carries.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import secrets
import ssl
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import trustme

from devtools.simulators.base import Reply, Request, SimServer, json_reply, route, utc_now

TOKEN_LIFETIME_SECONDS = 3599
TENANT = r"/(?P<tenant>[^/]+)"


@dataclass(frozen=True)
class AppRegistration:
    """An application registered in a tenant, with its secret and consented application permissions."""

    tenant_id: str
    client_id: str
    client_secret: str
    permissions: frozenset[str]


@dataclass
class AccessGrant:
    """What an issued access token stands for."""

    token: str
    tenant_id: str
    client_id: str
    permissions: frozenset[str]
    expires_at: dt.datetime = field(default_factory=utc_now)

    @property
    def expired(self) -> bool:
        return utc_now() >= self.expires_at


class LoginError(Exception):
    """An OAuth error as Entra ID words it."""

    def __init__(self, status: int, error: str, aadsts: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.aadsts = aadsts
        self.description = description


def server_ssl_context(ca: trustme.CA) -> ssl.SSLContext:
    """A server context with a certificate for 127.0.0.1 and localhost, signed by `ca`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


class LoginSimulator(SimServer):
    """`https://127.0.0.1:PORT/{tenant}`: discovery and `POST /{tenant}/oauth2/v2.0/token`."""

    name = "login"
    status_codes = {
        404: "invalid_request",
        405: "invalid_request",
        429: "temporarily_unavailable",
        500: "server_error",
        503: "temporarily_unavailable",
        504: "temporarily_unavailable",
    }

    def __init__(self, ca: trustme.CA) -> None:
        super().__init__(server_ssl_context(ca))
        self._apps: dict[tuple[str, str], AppRegistration] = {}
        self._tenants: set[str] = set()
        self._grants: dict[str, AccessGrant] = {}
        self.routes = [
            route("GET", TENANT + r"/v2\.0/\.well-known/openid-configuration", self._discovery),
            route("GET", TENANT + r"/\.well-known/openid-configuration", self._discovery),
            route("POST", TENANT + r"/oauth2/v2\.0/token", self._token),
        ]

    # scripting

    def add_app(self, tenant_id: str, client_id: str, client_secret: str, permissions: Iterable[str]) -> None:
        """Register (or replace) an application in a tenant; the tenant exists from then on."""
        app = AppRegistration(tenant_id, client_id, client_secret, frozenset(permissions))
        with self.lock:
            self._tenants.add(tenant_id)
            self._apps[(tenant_id, client_id)] = app

    def grant(self, token: str) -> AccessGrant | None:
        """The grant behind an access token this server issued (expired ones included), else None."""
        with self.lock:
            return self._grants.get(token)

    def expire_tokens(self) -> None:
        """Make every issued access token expired (Graph then answers 401)."""
        with self.lock:
            for issued in self._grants.values():
                issued.expires_at = utc_now() - dt.timedelta(seconds=1)

    # routes

    def _discovery(self, request: Request, match: re.Match[str]) -> Reply:
        tenant = match["tenant"]
        with self.lock:
            known = tenant in self._tenants
        if not known:
            return self._oauth_error(LoginError(400, "invalid_tenant", 90002, _tenant_not_found(tenant)))
        issuer = f"{self.base_url}/{tenant}/v2.0"
        return json_reply(
            200,
            {
                "token_endpoint": f"{self.base_url}/{tenant}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "jwks_uri": f"{self.base_url}/{tenant}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": issuer,
                "request_uri_parameter_supported": False,
                "authorization_endpoint": f"{self.base_url}/{tenant}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{self.base_url}/{tenant}/oauth2/v2.0/devicecode",
                "end_session_endpoint": f"{self.base_url}/{tenant}/oauth2/v2.0/logout",
                "tenant_region_scope": "EU",
                "cloud_instance_name": "microsoftonline.com",
                "cloud_graph_host_name": "graph.windows.net",
                "msgraph_host": "graph.microsoft.com",
            },
        )

    def _token(self, request: Request, match: re.Match[str]) -> Reply:
        try:
            issued = self._issue(match["tenant"], request)
        except LoginError as error:
            return self._oauth_error(error)
        return json_reply(
            200,
            {
                "token_type": "Bearer",
                "expires_in": TOKEN_LIFETIME_SECONDS,
                "ext_expires_in": TOKEN_LIFETIME_SECONDS,
                "access_token": issued.token,
            },
        )

    def _issue(self, tenant: str, request: Request) -> AccessGrant:
        form = request.form()
        client_id, client_secret = _client_credentials(request, form)
        with self.lock:
            known_tenant = tenant in self._tenants
            app = self._apps.get((tenant, client_id))
        if not known_tenant:
            raise LoginError(400, "invalid_request", 90002, _tenant_not_found(tenant))
        _check_grant_type(form)
        _check_client(tenant, client_id, client_secret, app)
        _check_scope(form.get("scope", ""))
        assert app is not None
        token = _access_token(app)
        issued = AccessGrant(
            token, tenant, client_id, app.permissions, utc_now() + dt.timedelta(seconds=TOKEN_LIFETIME_SECONDS)
        )
        with self.lock:
            self._grants[token] = issued
        return issued

    # errors

    def _oauth_error(self, error: LoginError) -> Reply:
        return self.error_reply(error.status, error.error, error.description, aadsts=error.aadsts)

    def error_reply(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None, aadsts: int = 50000
    ) -> Reply:
        trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
        now = utc_now()
        stamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
        return json_reply(
            status,
            {
                "error": code,
                "error_description": (
                    f"AADSTS{aadsts}: {message} Trace ID: {trace_id} "
                    f"Correlation ID: {correlation_id} Timestamp: {stamp}"
                ),
                "error_codes": [aadsts],
                "timestamp": stamp,
                "trace_id": trace_id,
                "correlation_id": correlation_id,
                "error_uri": f"{self.base_url}/error?code={aadsts}",
            },
            headers,
        )


def _client_credentials(request: Request, form: Mapping[str, str]) -> tuple[str, str | None]:
    """client_secret_post (what msal sends) or client_secret_basic."""
    basic = request.basic_credentials()
    if basic is not None:
        return basic
    client_id = form.get("client_id", "")
    if not client_id:
        raise LoginError(
            400, "invalid_request", 900144, "The request body must contain the following parameter: 'client_id'."
        )
    return client_id, form.get("client_secret")


def _check_grant_type(form: Mapping[str, str]) -> None:
    grant_type = form.get("grant_type", "")
    if not grant_type:
        raise LoginError(
            400, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'."
        )
    if grant_type != "client_credentials":
        raise LoginError(
            400, "unsupported_grant_type", 70003, f"The app requested an unsupported grant type '{grant_type}'."
        )


def _check_client(tenant: str, client_id: str, secret: str | None, app: AppRegistration | None) -> None:
    if app is None:
        raise LoginError(
            400,
            "unauthorized_client",
            700016,
            (
                f"Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can "
                "happen if the application has not been installed by the administrator of the tenant or consented "
                "to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
            ),
        )
    if not secret:
        raise LoginError(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        )
    if not secrets.compare_digest(secret, app.client_secret):
        raise LoginError(
            401,
            "invalid_client",
            7000215,
            (
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret "
                f"value, not the client secret ID, for a secret added to app '{client_id}'."
            ),
        )


def _check_scope(scope: str) -> None:
    if not scope:
        raise LoginError(
            400, "invalid_request", 900144, "The request body must contain the following parameter: 'scope'."
        )
    if not scope.endswith("/.default") or " " in scope.strip():
        raise LoginError(
            400,
            "invalid_scope",
            1002012,
            (
                f"The provided value for scope {scope} is not valid. Client credential flows must have a scope "
                "value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        )


def _tenant_not_found(tenant: str) -> str:
    return (
        f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing "
        "into the correct cloud. Check with your subscription administrator, this may happen if there are "
        "no active subscriptions for the tenant."
    )


def _access_token(app: AppRegistration) -> str:
    """A JWT-shaped token with Entra's app-only claims (`tid`, `appid`, `roles`); the signature is random."""
    now = int(utc_now().timestamp())
    claims = {
        "aud": "https://graph.microsoft.com",
        "iss": f"https://sts.windows.net/{app.tenant_id}/",
        "iat": now,
        "nbf": now,
        "exp": now + TOKEN_LIFETIME_SECONDS,
        "appid": app.client_id,
        "tid": app.tenant_id,
        "roles": sorted(app.permissions),
        "idtyp": "app",
        "ver": "1.0",
        "uti": secrets.token_urlsafe(16),
    }
    parts = [{"typ": "JWT", "alg": "RS256", "kid": "simulator"}, claims]
    encoded = [base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode() for part in parts]
    return ".".join([*encoded, secrets.token_urlsafe(32)])
