"""Microsoft identity platform (Entra ID) look-alike for msal: OpenID discovery, client-credentials tokens
(a client secret, or an RFC 7523 certificate client assertion checked against the registered certificate),
and the admin-consent page a multi-tenant app sends a customer's administrator to.

Serves TLS with a certificate from a trustme CA, because msal refuses plain http. Errors use Entra's
words (`AADSTS…` descriptions, `error_codes`) so client code can be tested against them. The Graph
simulator asks this one whether a bearer token is valid and which application permissions it carries.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import html
import json
import re
import secrets
import ssl
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

import jwt
import requests
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from devtools.simulators.base import Reply, Request, SimServer, json_reply, route, utc_now

TOKEN_LIFETIME_SECONDS = 3599
TENANT = r"/(?P<tenant>[^/]+)"
_DER = Encoding.DER
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = ["RS256", "PS256"]  # certificate-credentials.md: RS256 with x5t, PS256 with x5t#S256
CONSENT_DECLINED = "AADSTS65004: User declined to consent to access the app."
# The permission names the consent page lists for Graph's application permissions.
PERMISSION_TEXTS = {
    "Calendars.Read": "Read calendars in all mailboxes",
    "GroupMember.Read.All": "Read all group memberships",
    "User.Read.All": "Read all users' full profiles",
}


@dataclass(frozen=True)
class Certificate:
    """A certificate registered on an app: its public key and both thumbprints (hex, upper case)."""

    pem: str
    sha1: str
    sha256: str

    @classmethod
    def from_pem(cls, pem: str | bytes) -> Certificate:
        text = pem.decode() if isinstance(pem, bytes) else pem
        loaded = x509.load_pem_x509_certificate(text.encode())
        der = loaded.public_bytes(encoding=_DER)
        return cls(text, hashlib.sha1(der).hexdigest().upper(), hashlib.sha256(der).hexdigest().upper())

    def public_key(self) -> object:
        return x509.load_pem_x509_certificate(self.pem.encode()).public_key()


@dataclass(frozen=True)
class AppRegistration:
    """An application registered in a tenant, with its secret and/or certificates and consented application
    permissions."""

    tenant_id: str
    client_id: str
    client_secret: str
    permissions: frozenset[str]
    certificates: tuple[Certificate, ...] = ()


@dataclass(frozen=True)
class MultiTenantApp:
    """A multi-tenant application (Nettsoft's): in its home directory with its credentials; a tenant's admin
    consenting adds it (its service principal) to that tenant with `permissions`."""

    client_id: str
    name: str
    client_secret: str
    permissions: frozenset[str]
    certificates: tuple[Certificate, ...]
    redirect_uris: tuple[str, ...]


@dataclass
class ConsentSwitch:
    """Who signs in on the admin-consent page: an administrator of `tenant_id`; `refuse` declines at once."""

    tenant_id: str = ""
    refuse: bool = False


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
        self._multi_tenant_apps: dict[str, MultiTenantApp] = {}
        self._tenants: set[str] = set()
        self._grants: dict[str, AccessGrant] = {}
        self._consent = ConsentSwitch()
        self._consents: list[tuple[str, str]] = []  # (tenant, client id) in the order admins consented
        self.routes = [
            route("GET", TENANT + r"/v2\.0/\.well-known/openid-configuration", self._discovery),
            route("GET", TENANT + r"/\.well-known/openid-configuration", self._discovery),
            route("POST", TENANT + r"/oauth2/v2\.0/token", self._token),
            route("GET", TENANT + r"/v2\.0/adminconsent", self._consent_page),
            route("POST", TENANT + r"/v2\.0/adminconsent/decision", self._consent_decision),
            route("GET", r"/_simulator/consent", self._get_consent_switch),
            route("POST", r"/_simulator/consent", self._set_consent_switch),
        ]

    # scripting

    def add_app(
        self,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        permissions: Iterable[str],
        certificates: Iterable[str | bytes] = (),
    ) -> None:
        """Register (or replace) an application in a tenant; the tenant exists from then on. `certificates`
        (PEM) may sign client assertions instead of the secret."""
        registered = tuple(Certificate.from_pem(pem) for pem in certificates)
        app = AppRegistration(tenant_id, client_id, client_secret, frozenset(permissions), registered)
        with self.lock:
            self._tenants.add(tenant_id)
            self._apps[(tenant_id, client_id)] = app

    def add_tenant(self, tenant_id: str) -> None:
        """A directory with no app in it yet (a customer who has not consented to anything)."""
        with self.lock:
            self._tenants.add(tenant_id)

    def add_multi_tenant_app(
        self,
        client_id: str,
        *,
        name: str,
        permissions: Iterable[str],
        client_secret: str = "",
        certificates: Iterable[str | bytes] = (),
        redirect_uris: Iterable[str] = (),
    ) -> None:
        """Register a multi-tenant app (Nettsoft's). It can sign in to a tenant only once an administrator of
        that tenant consented on the admin-consent page (or `grant_consent`). With `redirect_uris`, consent
        answers go only to those (Entra's AADSTS50011); without, to any address."""
        app = MultiTenantApp(
            client_id,
            name,
            client_secret,
            frozenset(permissions),
            tuple(Certificate.from_pem(pem) for pem in certificates),
            tuple(redirect_uris),
        )
        with self.lock:
            self._multi_tenant_apps[client_id] = app

    def grant_consent(self, tenant_id: str, client_id: str) -> None:
        """What an administrator's "Accept" does: the multi-tenant app gets its permissions in the tenant."""
        with self.lock:
            app = self._multi_tenant_apps[client_id]
            self._tenants.add(tenant_id)
            self._apps[(tenant_id, client_id)] = AppRegistration(
                tenant_id, client_id, app.client_secret, app.permissions, app.certificates
            )
            self._consents.append((tenant_id, client_id))

    def revoke_consent(self, tenant_id: str, client_id: str) -> None:
        """An administrator deleted the app from the tenant's Enterprise applications."""
        with self.lock:
            self._apps.pop((tenant_id, client_id), None)

    def has_app(self, tenant_id: str, client_id: str) -> bool:
        """Whether the app may sign in to the tenant (registered there, or consented to)."""
        with self.lock:
            return (tenant_id, client_id) in self._apps

    def consents(self) -> list[tuple[str, str]]:
        """(tenant, client id) of every consent given, in order."""
        with self.lock:
            return list(self._consents)

    def set_consent(self, *, tenant_id: str | None = None, refuse: bool | None = None) -> None:
        """Switches for the admin-consent page: the tenant whose administrator signs in, and whether the
        administrator refuses (the page then answers access_denied at once, as after "Cancel")."""
        with self.lock:
            if tenant_id is not None:
                self._consent.tenant_id = tenant_id
            if refuse is not None:
                self._consent.refuse = refuse

    def consent_answer(self, consent_url: str, *, accept: bool = True, ca_path: str | bool = True) -> str:
        """Follow an admin-consent link as a browser would and click "Accept" (or "Cancel"): the address
        Microsoft sends the administrator back to (for tests without a browser; goes through the routes).
        `ca_path`: the CA that signed this server's certificate (`Simulators.ca_path`)."""
        session = requests.Session()
        session.trust_env = False
        session.verify = ca_path
        page = session.get(consent_url, allow_redirects=False, timeout=10)
        if page.status_code in (301, 302, 303):
            return str(page.headers["Location"])
        if page.status_code != 200:
            raise RuntimeError(f"the consent page answered {page.status_code}: {page.text[:300]}")
        action = re.search(r'<form method="post" action="([^"]+)"', page.text)
        fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text))
        if action is None:
            raise RuntimeError("the consent page has no form")
        fields = {key: html.unescape(value) for key, value in fields.items()}
        fields["decision"] = "accept" if accept else "cancel"
        answer = session.post(
            self.base_url + html.unescape(action.group(1)), data=fields, allow_redirects=False, timeout=10
        )
        return str(answer.headers["Location"])

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
        if form.get("client_assertion") or form.get("client_assertion_type"):
            _check_assertion(
                client_id,
                form.get("client_assertion_type", ""),
                form.get("client_assertion", ""),
                app,
                audience=f"{self.base_url}/{tenant}/oauth2/v2.0/token",
                tenant=tenant,
            )
        else:
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

    # admin consent (v2-admin-consent.md)

    def _consent_page(self, request: Request, match: re.Match[str]) -> Reply:
        """`GET /{organizations|tenant}/v2.0/adminconsent?client_id&scope&redirect_uri&state`: the page an
        administrator sees, "Permissions requested", with "Accept" and "Cancel"."""
        query = request.query
        client_id = query.get("client_id", "")
        redirect_uri = query.get("redirect_uri", "")
        with self.lock:
            app = self._multi_tenant_apps.get(client_id)
            switch = ConsentSwitch(self._consent.tenant_id, self._consent.refuse)
        if app is None:
            return _html_error(
                400,
                f"AADSTS700016: Application with identifier '{client_id}' was not found in the directory.",
            )
        problem = _redirect_problem(app, redirect_uri)
        if problem:
            return _html_error(400, problem)
        if not query.get("scope", "").strip():
            return _html_error(400, "AADSTS900144: The request body must contain the following parameter: 'scope'.")
        tenant = match["tenant"]
        signed_in = switch.tenant_id if tenant in ("organizations", "common") else tenant
        if not signed_in:
            return _html_error(400, "AADSTS90002: No administrator is signed in (set the simulator's consent tenant).")
        if switch.refuse:
            return _redirect(redirect_uri, _declined(query.get("state", "")))
        hidden = {
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "state": query.get("state", ""),
            "scope": query.get("scope", ""),
            "signed_in_tenant": signed_in,
        }
        permissions = "".join(
            f"<li>{html.escape(PERMISSION_TEXTS.get(name, name))} ({html.escape(name)})</li>"
            for name in sorted(app.permissions)
        )
        inputs = "".join(
            f'<input type="hidden" name="{html.escape(key)}" value="{html.escape(value)}">'
            for key, value in hidden.items()
        )
        action = html.escape(f"/{tenant}/v2.0/adminconsent/decision")
        body = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Permissions requested</title></head>
<body>
<h1>Permissions requested</h1>
<p>Signed in as an administrator of the directory <code>{html.escape(signed_in)}</code>.</p>
<p><strong>{html.escape(app.name)}</strong> would like to:</p>
<ul>{permissions}</ul>
<p>Accepting grants these permissions for your whole organisation.</p>
<form method="post" action="{action}">{inputs}
<button type="submit" name="decision" value="cancel">Cancel</button>
<button type="submit" name="decision" value="accept">Accept</button>
</form>
</body></html>
"""
        return Reply(200, body.encode("utf-8"), "text/html; charset=utf-8")

    def _consent_decision(self, request: Request, match: re.Match[str]) -> Reply:
        """The page's buttons: Accept adds the app to the tenant and sends `tenant` and `admin_consent=True`
        back; Cancel sends `error=access_denied` (AADSTS65004)."""
        form = request.form()
        client_id = form.get("client_id", "")
        redirect_uri = form.get("redirect_uri", "")
        with self.lock:
            app = self._multi_tenant_apps.get(client_id)
        if app is None:
            return _html_error(400, f"AADSTS700016: Application with identifier '{client_id}' was not found.")
        problem = _redirect_problem(app, redirect_uri)
        if problem:
            return _html_error(400, problem)
        state = form.get("state", "")
        if form.get("decision") != "accept":
            return _redirect(redirect_uri, _declined(state))
        tenant = form.get("signed_in_tenant", "")
        self.grant_consent(tenant, client_id)
        return _redirect(
            redirect_uri,
            {
                "tenant": tenant,
                "admin_consent": "True",
                "scope": "https://graph.microsoft.com/.default",
                "state": state,
            },
        )

    def _get_consent_switch(self, request: Request, match: re.Match[str]) -> Reply:
        with self.lock:
            return json_reply(200, {"tenant_id": self._consent.tenant_id, "refuse": self._consent.refuse})

    def _set_consent_switch(self, request: Request, match: re.Match[str]) -> Reply:
        """`POST /_simulator/consent {"tenant_id": "…", "refuse": false}`: `set_consent` from another process."""
        try:
            payload = request.json()
        except ValueError as error:
            return json_reply(400, {"error": str(error)})
        if not isinstance(payload, dict):
            return json_reply(400, {"error": "send a JSON object"})
        tenant_id = payload.get("tenant_id")
        refuse = payload.get("refuse")
        self.set_consent(
            tenant_id=str(tenant_id) if tenant_id is not None else None,
            refuse=bool(refuse) if refuse is not None else None,
        )
        return self._get_consent_switch(request, match)

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


def _check_assertion(
    client_id: str, assertion_type: str, assertion: str, app: AppRegistration | None, *, audience: str, tenant: str
) -> None:
    """An RFC 7523 client assertion as certificate-credentials.md describes it: a JWT whose header's `x5t`
    (base64url SHA-1 thumbprint, RS256) or `x5t#S256` (SHA-256, PS256) names a certificate registered on the
    app, signed with that certificate's key, `aud` the token endpoint, `iss` = `sub` = the client id, not expired."""
    if app is None:
        _check_client(tenant, client_id, None, app)
        return
    if assertion_type != CLIENT_ASSERTION_TYPE or not assertion:
        raise LoginError(
            400,
            "invalid_request",
            900144,
            f"The request body must contain 'client_assertion' and client_assertion_type '{CLIENT_ASSERTION_TYPE}'.",
        )
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.InvalidTokenError:
        raise LoginError(401, "invalid_client", 50027, "JWT token is invalid or malformed.") from None
    sha1, sha256 = _thumbprint(header.get("x5t")), _thumbprint(header.get("x5t#S256"))
    certificate = next(
        (c for c in app.certificates if (sha1 and c.sha1 == sha1) or (sha256 and c.sha256 == sha256)), None
    )
    if certificate is None:
        raise LoginError(
            401,
            "invalid_client",
            700027,
            (
                "The certificate with identifier used to sign the client assertion is not registered on application. "
                f"[Reason - The key was not found., Thumbprint of key used by client: '{sha1 or sha256}', Please "
                f"visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id "
                f"'{client_id}'.]"
            ),
        )
    try:
        claims = jwt.decode(
            assertion,
            certificate.public_key(),  # type: ignore[arg-type]
            algorithms=ASSERTION_ALGORITHMS,
            audience=audience,
            issuer=client_id,
            options={"require": ["exp", "aud", "iss", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise LoginError(
            401, "invalid_client", 700024, "Client assertion is not within its valid time range."
        ) from None
    except jwt.InvalidSignatureError:
        raise LoginError(
            401, "invalid_client", 7000274, "Key was found, but use of the key to verify the signature failed."
        ) from None
    except jwt.InvalidTokenError as error:
        raise LoginError(
            401, "invalid_client", 700027, f"Client assertion failed signature validation. [Reason - {error}]"
        ) from None
    if claims.get("sub") != client_id:
        raise LoginError(401, "invalid_client", 700023, "Client assertion subject does not match the client id.")


def _thumbprint(value: object) -> str:
    """A base64url JWT thumbprint header as upper-case hex; "" when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return ""
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).hex().upper()
    except ValueError:
        return ""


def _redirect_problem(app: MultiTenantApp, redirect_uri: str) -> str:
    if not redirect_uri or urlsplit(redirect_uri).scheme not in ("http", "https"):
        return "AADSTS900144: The request body must contain the following parameter: 'redirect_uri'."
    if app.redirect_uris and redirect_uri not in app.redirect_uris:
        return (
            f"AADSTS50011: The redirect URI '{redirect_uri}' specified in the request does not match the redirect "
            f"URIs configured for the application '{app.client_id}'."
        )
    return ""


def _declined(state: str) -> dict[str, str]:
    return {"error": "access_denied", "error_description": CONSENT_DECLINED, "state": state}


def _redirect(redirect_uri: str, params: Mapping[str, str]) -> Reply:
    separator = "&" if urlsplit(redirect_uri).query else "?"
    return Reply(302, b"", "", {"Location": redirect_uri + separator + urlencode(params)})


def _html_error(status: int, message: str) -> Reply:
    body = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Sign in to your account</title></head>'
        f"<body><h1>Sorry, but we're having trouble signing you in.</h1><p>{html.escape(message)}</p></body></html>"
    )
    return Reply(status, body.encode("utf-8"), "text/html; charset=utf-8")


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
