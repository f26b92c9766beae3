"""Customers connect their calendar system and Telenor MBN themselves: Microsoft 365 by admin consent to
Nettsoft's multi-tenant app, Google through Nettsoft's service account, Exchange on-premises with a service
account, MBN with the API user they create in Min Bedrift. Each connection is tested before it is kept.

Services (keyword-only, each step audited as a `ConnectionEvent`, one transaction per business action: a
failed test saves nothing but its audit row and the test's outcome) and the selectors the portal and admin
connection pages read. Errors are `ConnectionErrorCode`s with parameters, worded by
`describe_connection_error` as (what is wrong, what to do).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import re
import secrets
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator, URLValidator
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from customers.models import Customer, ServiceUser
from customers.services import update_service_states
from sync import pipeline
from sync.errors import ConnectionErrorCode, SyncErrorCode, describe, describe_connection_error
from sync.mbn import MbnAuthError, MbnClient, MbnError, MbnNotFound, MbnUnavailable, match_subscribers
from sync.models import CalendarSource, ConnectionEvent, ConsentRequest, MbnConnection
from sync.providers.base import (
    AuthError,
    DirectoryUser,
    NotFound,
    PermissionMissing,
    ProviderError,
    TemporaryError,
    Throttled,
)
from sync.providers.google import ALL_SCOPES as GOOGLE_SCOPES
from sync.providers.graph import GRAPH_SCOPE, GroupChoice
from sync.services import queue_first_sync

__all__ = [
    "CONNECTIONS",
    "ConnectionErrorCode",
    "ConnectionProblem",
    "ConnectionStatus",
    "ConnectionTestResult",
    "GoogleSetupInfo",
    "GroupChoice",
    "choose_group",
    "connection_events",
    "customer_connections",
    "describe_connection_error",
    "finish_microsoft_consent",
    "google_setup_info",
    "microsoft_consent_url",
    "remove_connection",
    "removed_words",
    "save_ews",
    "save_google",
    "save_mbn",
    "search_groups",
    "test_connection",
]

Connection = ConnectionEvent.Connection
Action = ConnectionEvent.Action
CONNECTIONS = (Connection.MICROSOFT365, Connection.GOOGLE, Connection.EWS, Connection.MBN)
KIND_OF = {
    Connection.MICROSOFT365: CalendarSource.Kind.GRAPH,
    Connection.GOOGLE: CalendarSource.Kind.GOOGLE,
    Connection.EWS: CalendarSource.Kind.EWS,
}
SYSTEM_NAMES: dict[str, str] = {
    Connection.MICROSOFT365: "Microsoft 365",
    Connection.GOOGLE: "Google Workspace",
    Connection.EWS: "Exchange",
    Connection.MBN: "Telenor MBN",
}
UNMATCHED_SHOWN = 50  # unmatched users listed in an MBN test's details
GROUP_SEARCH_LIMIT = 25
_TENANT_ID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


# --- results and problems -------------------------------------------------------------------------------------


class ConnectionProblem(Exception):
    """Connecting failed: `code` (a ConnectionErrorCode) and `params` say why, `field` names the form field at
    fault (or None); `what` and `what_to_do` word it for the reader (Norwegian in the portal)."""

    def __init__(self, code: str, params: Mapping[str, Any] | None = None, *, field: str | None = None) -> None:
        self.code = str(code)
        self.params = dict(params or {})
        self.field = field
        super().__init__(f"{self.code}: {self.params}")

    @property
    def what(self) -> str:
        return describe_connection_error(self.code, self.params)[0]

    @property
    def what_to_do(self) -> str:
        return describe_connection_error(self.code, self.params)[1]


@dataclass(frozen=True)
class ConnectionTestResult:
    """The outcome of a connection test: `ok`, or the failure's `code` ("" when ok) and `params`; `details`
    what it found (Graph/Google/EWS `{"group_name", "members"}`; MBN `{"subscribers", "matched", "unmatched"}`)."""

    ok: bool
    code: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    field: str | None = None  # the form field at fault, when one is (a wrong password: "password")

    @property
    def what(self) -> str:
        return describe_connection_error(self.code, self.params)[0] if not self.ok else ""

    @property
    def what_to_do(self) -> str:
        return describe_connection_error(self.code, self.params)[1] if not self.ok else ""

    @classmethod
    def passed(cls, details: Mapping[str, Any]) -> ConnectionTestResult:
        return cls(ok=True, details=dict(details))

    @classmethod
    def failed(cls, problem: ConnectionProblem) -> ConnectionTestResult:
        return cls(ok=False, code=problem.code, params=dict(problem.params), field=problem.field)

    def problem(self) -> ConnectionProblem:
        """The failed result as the exception the `save_*` services raise."""
        return ConnectionProblem(self.code, self.params, field=self.field)


@dataclass(frozen=True)
class GoogleSetupInfo:
    """What a Google Workspace admin authorises under domain-wide delegation: the client id and the scopes."""

    client_id: str
    scopes: list[str]


@dataclass(frozen=True)
class ConnectionStatus:
    """One card of the connections page.

    `state`: "working" | "failing" | "untested" | "not_connected" | "awaiting_group". `summary` names what is
    connected (tenant, group, enterprise id — never a secret); `what` / `what_to_do` when failing. `values`
    holds the non-secret saved fields for the edit forms (e.g. `{"endpoint", "username", "group"}`), and
    `has_secret` whether a password or secret is stored (shown as "lagret", never the value).
    """

    connection: str
    label: str
    state: str
    source_id: int | None = None
    summary: str = ""
    last_success_at: dt.datetime | None = None
    tested_at: dt.datetime | None = None
    what: str = ""
    what_to_do: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)
    has_secret: bool = False
    uses_nettsoft_app: bool = False


# --- audit --------------------------------------------------------------------------------------------------------


def _audit(
    *,
    customer: Customer,
    connection: str,
    action: str,
    user: Any,
    error_code: str = "",
    params: Mapping[str, Any] | None = None,
) -> ConnectionEvent:
    actor = user if getattr(user, "pk", None) else None
    return ConnectionEvent.objects.create(
        customer=customer,
        connection=connection,
        action=action,
        actor=actor,
        error_code=error_code,
        params=dict(params or {}),
    )


def _record_test(target: CalendarSource | MbnConnection, result: ConnectionTestResult) -> None:
    """Store the test's outcome on the saved connection (one UPDATE; no history row for it)."""
    values = {
        "tested_at": timezone.now(),
        "test_ok": result.ok,
        "test_error_code": result.code,
        "test_error_params": result.params,
        "test_details": result.details,
    }
    type(target).objects.filter(pk=target.pk).update(**values)
    for name, value in values.items():
        setattr(target, name, value)


# --- Microsoft 365 by admin consent -------------------------------------------------------------------------


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def nettsoft_graph_configured() -> bool:
    """Whether Nettsoft's multi-tenant app is set: its client id and a certificate (key + thumbprint) or secret."""
    certificate = settings.NETTSOFT_GRAPH_CERTIFICATE_KEY_FILE and settings.NETTSOFT_GRAPH_CERTIFICATE_THUMBPRINT
    return bool(settings.NETTSOFT_GRAPH_CLIENT_ID and (certificate or settings.NETTSOFT_GRAPH_CLIENT_SECRET))


def _microsoft_source(customer: Customer) -> CalendarSource | None:
    return _first_source(customer, CalendarSource.Kind.GRAPH)


def _tenant_taken(customer: Customer, tenant: str) -> bool:
    """Whether another customer holds a (not disconnected) Microsoft 365 source for `tenant`."""
    return (
        CalendarSource.objects.filter(kind=CalendarSource.Kind.GRAPH, tenant_id__iexact=tenant, removed_at__isnull=True)
        .exclude(customer=customer)
        .exists()
    )


def microsoft_consent_url(
    *, customer: Customer, user: Any, session_key: str, redirect_uri: str, source: CalendarSource | None = None
) -> str:
    """The address of Microsoft's admin-consent page for Nettsoft's app, with a fresh single-use `state`.

    The state (32 random bytes, URL-safe) is kept only as its sha256 in a ConsentRequest bound to the customer,
    the user and the browser session (`session_key`, hashed). The consent must then come for the tenant of
    `source`, or of the customer's Microsoft 365 source when it has one. Audited as consent_started. Raises
    ConnectionProblem(NOT_CONFIGURED) when Nettsoft's app is not set in the settings.
    """
    if not nettsoft_graph_configured():
        raise ConnectionProblem(ConnectionErrorCode.NOT_CONFIGURED, {"system": "Microsoft 365"})
    if not session_key:
        raise ConnectionProblem(ConnectionErrorCode.STATE_OTHER_SESSION, _minutes())
    expected = source if source is not None else _microsoft_source(customer)
    state = secrets.token_urlsafe(32)
    with transaction.atomic():
        ConsentRequest.objects.create(
            customer=customer,
            user=user,
            session_key_hash=_sha256(session_key),
            state_hash=_sha256(state),
            source=expected if expected is not None and expected.tenant_id else None,
        )
        _audit(customer=customer, connection=Connection.MICROSOFT365, action=Action.CONSENT_STARTED, user=user)
    query = urlencode(
        {
            "client_id": settings.NETTSOFT_GRAPH_CLIENT_ID,
            "scope": GRAPH_SCOPE,
            "redirect_uri": redirect_uri,
            "state": state,
        }
    )
    return f"{settings.MICROSOFT_LOGIN_BASE_URL.rstrip('/')}/organizations/v2.0/adminconsent?{query}"


def _minutes() -> dict[str, int]:
    return {"minutes": max(1, settings.CONNECTION_CONSENT_MAX_AGE_SECONDS // 60)}


def _rejected(customer: Customer, user: Any, code: str, params: Mapping[str, Any], *, action: str) -> NoReturn:
    _audit(
        customer=customer, connection=Connection.MICROSOFT365, action=action, user=user, error_code=code, params=params
    )
    raise ConnectionProblem(code, params)


def finish_microsoft_consent(
    *, customer: Customer, user: Any, session_key: str, query: Mapping[str, str]
) -> CalendarSource:
    """Read Microsoft's answer to the admin-consent page (the callback's query string).

    The `state` must be one we issued, for this customer, user and browser session, unused and younger than
    CONNECTION_CONSENT_MAX_AGE_SECONDS; it is then used up, whatever follows. An `error` (the admin clicked
    Cancel: access_denied) raises CONSENT_REFUSED, another CONSENT_FAILED with Microsoft's description;
    otherwise `admin_consent=True` and a `tenant` are required, and the tenant must be the expected one
    (TENANT_MISMATCH). The Microsoft 365 source for the tenant is then created (or the existing one for the
    same tenant switched to Nettsoft's app): `uses_nettsoft_app`, and — when new — no group and inactive until
    `choose_group`. Every outcome is audited; raises ConnectionProblem, with nothing saved but the audit.
    """
    state = str(query.get("state") or "")
    request = ConsentRequest.objects.filter(state_hash=_sha256(state)).first() if state else None
    if request is None or request.customer_id != customer.pk:
        _rejected(customer, user, ConnectionErrorCode.STATE_INVALID, _minutes(), action=Action.CONSENT_REJECTED)
    if request.user_id != getattr(user, "pk", None) or request.session_key_hash != _sha256(session_key or ""):
        _rejected(customer, user, ConnectionErrorCode.STATE_OTHER_SESSION, _minutes(), action=Action.CONSENT_REJECTED)
    max_age = dt.timedelta(seconds=settings.CONNECTION_CONSENT_MAX_AGE_SECONDS)
    now = timezone.now()
    # Used up in one conditional UPDATE: a second callback with the same state (reload, double click) finds none.
    claimed = ConsentRequest.objects.filter(pk=request.pk, used_at__isnull=True).update(used_at=now)
    if not claimed:
        _rejected(customer, user, ConnectionErrorCode.STATE_USED, _minutes(), action=Action.CONSENT_REJECTED)
    if now - request.created_at > max_age:
        _rejected(customer, user, ConnectionErrorCode.STATE_EXPIRED, _minutes(), action=Action.CONSENT_REJECTED)
    error = str(query.get("error") or "")
    if error:
        description = str(query.get("error_description") or error)[:500]
        if error == "access_denied":
            _rejected(
                customer, user, ConnectionErrorCode.CONSENT_REFUSED, {"error": error}, action=Action.CONSENT_REFUSED
            )
        _rejected(
            customer,
            user,
            ConnectionErrorCode.CONSENT_FAILED,
            {"error": error, "description": description},
            action=Action.CONSENT_REFUSED,
        )
    tenant = str(query.get("tenant") or "").strip()
    if str(query.get("admin_consent") or "").casefold() != "true" or not _TENANT_ID.match(tenant):
        _rejected(
            customer,
            user,
            ConnectionErrorCode.CONSENT_FAILED,
            {"description": gettext("Microsoft's answer named no organisation that consented.")},
            action=Action.CONSENT_REJECTED,
        )
    # The tenant expected now, not when the consent started: a second consent finished meanwhile may have
    # connected one (two tabs), and then this one must be for the same tenant.
    current = request.source if request.source is not None and request.source.removed_at is None else None
    current = current or _microsoft_source(customer)
    expected = current.tenant_id if current is not None else ""
    if expected and expected.casefold() != tenant.casefold():
        _rejected(
            customer,
            user,
            ConnectionErrorCode.TENANT_MISMATCH,
            {"tenant": tenant, "expected": expected},
            action=Action.CONSENT_REJECTED,
        )
    # The tenant in Microsoft's answer is not signed: anyone can type it into the callback. Nettsoft's app
    # reaches every tenant that consented, so a tenant another customer holds is refused (and the database
    # refuses a second Nettsoft-app source for it, should two customers race). docs/operations.md.
    if _tenant_taken(customer, tenant):
        _rejected(customer, user, ConnectionErrorCode.TENANT_TAKEN, {"tenant": tenant}, action=Action.CONSENT_REJECTED)
    try:
        source = _consented_source(customer, user, tenant)
    except IntegrityError:
        _rejected(customer, user, ConnectionErrorCode.TENANT_TAKEN, {"tenant": tenant}, action=Action.CONSENT_REJECTED)
    if not source.uses_nettsoft_app:
        _switch_to_nettsoft_app(source, user)
    return source


def _consented_source(customer: Customer, user: Any, tenant: str) -> CalendarSource:
    """The customer's Microsoft 365 source for `tenant` (created, inactive and without a group, if none)."""
    with transaction.atomic():
        source = (
            CalendarSource.objects.select_for_update()
            .filter(customer=customer, kind=CalendarSource.Kind.GRAPH, tenant_id__iexact=tenant)
            .filter(removed_at__isnull=True)
            .order_by("pk")
            .first()
        )
        if source is None:
            source = CalendarSource.objects.create(
                customer=customer,
                kind=CalendarSource.Kind.GRAPH,
                tenant_id=tenant.lower(),
                uses_nettsoft_app=True,
                activation_group="",
                active=False,
            )
        _audit(
            customer=customer,
            connection=Connection.MICROSOFT365,
            action=Action.CONSENT_GRANTED,
            user=user,
            params={"tenant": source.tenant_id},
        )
    return source


def _switch_to_nettsoft_app(source: CalendarSource, user: Any) -> None:
    """A source on the customer's own app registration moves to Nettsoft's app only once the test passes with
    it; until then (and when it fails) it keeps signing in with its own registration. Raises the test's
    ConnectionProblem when it fails (the consent itself is kept in the audit)."""
    if source.activation_group:
        result = _test_source(_unsaved_copy(source, uses_nettsoft_app=True))
    else:  # nothing is synced without a group: nothing working to lose
        result = ConnectionTestResult.passed({})
    with transaction.atomic():
        if result.ok:
            source.uses_nettsoft_app = True
            source.client_id = ""
            source.secret_encrypted = ""
            try:
                with transaction.atomic():
                    source.save(update_fields=["uses_nettsoft_app", "client_id", "secret_encrypted"])
            except IntegrityError:
                result = ConnectionTestResult.failed(
                    ConnectionProblem(ConnectionErrorCode.TENANT_TAKEN, {"tenant": source.tenant_id})
                )
                source.refresh_from_db()
        if source.activation_group:
            if result.ok:
                _record_test(source, result)
            _audit_test(source.customer, Connection.MICROSOFT365, user, result, extra={"switch": "nettsoft_app"})
    if not result.ok:
        raise result.problem()


def search_groups(*, source: CalendarSource, query: str) -> list[GroupChoice]:
    """The tenant's groups whose name starts with, or has a word starting with, `query` (all groups, first
    GROUP_SEARCH_LIMIT by name, when `query` is blank), read with Nettsoft's app. Raises ConnectionProblem
    (TOKEN_REFUSED, PERMISSION_MISSING, TIMEOUT, …) when Graph cannot be asked."""
    if source.removed_at is not None:
        raise _nothing_to_test()
    if source.kind != CalendarSource.Kind.GRAPH:
        raise ConnectionProblem(
            ConnectionErrorCode.INVALID_INPUT, {"message": gettext("Only Microsoft 365 has a group search.")}
        )
    try:
        return list(pipeline.new_provider(source).search_groups(query.strip(), limit=GROUP_SEARCH_LIMIT))
    except ProviderError as error:
        raise _provider_problem(error, Connection.MICROSOFT365) from error


def choose_group(*, source: CalendarSource, group_id: str, user: Any) -> ConnectionTestResult:
    """Make `group_id` the source's activation group, once the connection test passes with it.

    The group must exist in the tenant; the test signs in, reads the group's members and one member's calendar.
    On success the group is stored, the source activated, the test recorded and the first sync queued (the
    group's members appear as users). On failure the source keeps its old group (none after a consent) and the
    result says why. Both are audited.
    """
    group_id = group_id.strip()
    connection = Connection.MICROSOFT365
    if source.removed_at is not None:  # disconnected meanwhile (another tab): connect again first
        raise _nothing_to_test()
    if not group_id:
        result = ConnectionTestResult.failed(
            ConnectionProblem(ConnectionErrorCode.GROUP_NOT_FOUND, {"group": "", "system": "Microsoft 365"})
        )
    else:
        result = _test_source(_unsaved_copy(source, activation_group=group_id))
    with transaction.atomic():
        if result.ok:
            source.activation_group = group_id
            source.active = True
            source.last_error, source.last_error_code, source.last_error_params = "", "", {}
            source.save(
                update_fields=["activation_group", "active", "last_error", "last_error_code", "last_error_params"]
            )
            _audit(
                customer=source.customer,
                connection=connection,
                action=Action.GROUP_CHOSEN,
                user=user,
                params={"group": result.details.get("group_name", group_id), "group_id": group_id},
            )
        _record_test(source, result)
        _audit_test(source.customer, connection, user, result)
        if result.ok:
            queue_first_sync(source_id=source.pk)
    return result


# --- Google Workspace through Nettsoft's service account ---------------------------------------------------


def _service_account_info() -> dict[str, Any] | None:
    """Nettsoft's service-account key (the JSON file named in the settings), or None when unset or unreadable."""
    path = settings.NETTSOFT_GOOGLE_SERVICE_ACCOUNT_FILE
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as key_file:
            info = json.load(key_file)
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and info.get("client_id") and info.get("private_key") else None


def google_setup_info() -> GoogleSetupInfo:
    """The client id of Nettsoft's service account ("" when not set up) and the exact scopes a Workspace admin
    enters under domain-wide delegation."""
    info = _service_account_info() or {}
    return GoogleSetupInfo(client_id=str(info.get("client_id") or ""), scopes=list(GOOGLE_SCOPES))


def save_google(*, customer: Customer, user: Any, admin_subject: str, group: str) -> ConnectionTestResult:
    """Connect Google Workspace through Nettsoft's service account: `admin_subject` is the administrator it
    acts as to read the group, `group` the activation group's address.

    Bad input raises ConnectionProblem with `field`; a failing test (delegation not authorised, unknown group,
    …) raises ConnectionProblem with the test's code, the previous settings kept and the attempt audited. On
    success the source is saved and active, the test recorded and the first sync queued."""
    admin_subject = admin_subject.strip().lower()
    group = group.strip().lower()
    _require_email(admin_subject, "admin_subject", gettext("The administrator's address is not an e-mail address."))
    _require_email(group, "group", gettext("The group's address is not an e-mail address."))
    domain = _domain(admin_subject)
    if _domain(group) != domain:  # one Workspace: the delegation is authorised per domain
        message = gettext("The group's address must be in the administrator's domain (%(domain)s).") % {
            "domain": domain
        }
        raise ConnectionProblem(ConnectionErrorCode.INVALID_INPUT, {"message": message}, field="group")
    if _service_account_info() is None:
        raise ConnectionProblem(ConnectionErrorCode.NOT_CONFIGURED, {"system": "Google Workspace"})
    values = {"admin_subject": admin_subject, "group": group}
    # Nettsoft's one service account is delegated in every customer's domain: a domain another customer holds
    # is refused, or a customer could read another's calendars by typing its addresses (docs/operations.md).
    if _google_domain_taken(customer, domain):
        result = ConnectionTestResult.failed(
            ConnectionProblem(ConnectionErrorCode.GOOGLE_DOMAIN_TAKEN, {"domain": domain}, field="admin_subject")
        )
        _audit_test(customer, Connection.GOOGLE, user, result, extra=values)
        raise result.problem()
    existing = _first_source(customer, CalendarSource.Kind.GOOGLE)
    # A key of its own, from before, is no longer used once Nettsoft's service account passed the test (a
    # failing test saves nothing: the source keeps its key and goes on working with it).
    candidate = _unsaved_copy(
        existing or CalendarSource(customer=customer, kind=CalendarSource.Kind.GOOGLE),
        uses_nettsoft_app=True,
        secret_encrypted="",
        admin_subject=admin_subject,
        activation_group=group,
    )
    return _save_tested_source(customer, user, Connection.GOOGLE, existing, candidate, values)


def _domain(address: str) -> str:
    return address.rpartition("@")[2].casefold()


def _google_domain_taken(customer: Customer, domain: str) -> bool:
    """Whether another customer's (not disconnected) Google source acts as, or reads a group of, `domain`."""
    suffix = f"@{domain}"
    return (
        CalendarSource.objects.filter(kind=CalendarSource.Kind.GOOGLE, removed_at__isnull=True)
        .filter(Q(admin_subject__iendswith=suffix) | Q(activation_group__iendswith=suffix))
        .exclude(customer=customer)
        .exists()
    )


# --- Exchange on-premises ---------------------------------------------------------------------------------------


def save_ews(
    *, customer: Customer, user: Any, endpoint: str, username: str, password: str, group: str
) -> ConnectionTestResult:
    """Connect Exchange on-premises: the EWS `endpoint` (https), the service account with the impersonation
    right and its `password` (stored encrypted; blank when editing keeps the stored one), and the distribution
    `group`'s address. Tested by expanding the group and reading one member's calendar by impersonation.

    Bad input raises ConnectionProblem with `field`; a failing test raises ConnectionProblem with its code,
    nothing saved but the audit; on success the source is saved and active and the first sync queued."""
    endpoint, username, group = endpoint.strip(), username.strip(), group.strip().lower()
    _check_endpoint(endpoint)
    # exchangelib opens the service account's own mailbox by its address to expand the group: not DOMAIN\user
    _require_email(
        username,
        "username",
        gettext("Enter the service account's e-mail address (its user principal name, not DOMAIN\\user)."),
    )
    _require_email(group, "group", gettext("The group's address is not an e-mail address."))
    existing = _first_source(customer, CalendarSource.Kind.EWS)
    if not password and not (existing and existing.secret_encrypted):
        raise ConnectionProblem(
            ConnectionErrorCode.INVALID_INPUT,
            {"message": gettext("Enter the service account's password.")},
            field="password",
        )
    candidate = _unsaved_copy(
        existing or CalendarSource(customer=customer, kind=CalendarSource.Kind.EWS),
        endpoint=endpoint,
        username=username,
        activation_group=group,
    )
    if password:
        candidate.set_secret(password)
    values = {"endpoint": endpoint, "username": username, "group": group}
    return _save_tested_source(customer, user, Connection.EWS, existing, candidate, values)


def _check_endpoint(endpoint: str) -> None:
    """The EWS address must be https and reach the internet: Kalender Push sends the service account's password
    there and reports what answers, so a loopback, link-local or private address (our own network) is refused.
    A lab (EWS_ALLOW_PRIVATE_ENDPOINTS: DEBUG/DEVTOOLS) may use one, and plain http on loopback (a simulator)."""
    allow_private = settings.EWS_ALLOW_PRIVATE_ENDPOINTS
    try:
        URLValidator(schemes=["https", "http"])(endpoint)
    except ValidationError:
        _bad_endpoint(gettext("The EWS address must be an https address like https://mail.firma.no/EWS/Exchange.asmx."))
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)}
    except (OSError, UnicodeError, ValueError):
        _bad_endpoint(gettext("The server name in the EWS address (%(host)s) was not found.") % {"host": host})
    ips = [ipaddress.ip_address(address.split("%")[0]) for address in addresses]
    loopback = bool(ips) and all(ip.is_loopback for ip in ips)
    if parts.scheme != "https" and not (allow_private and loopback):
        _bad_endpoint(gettext("The EWS address must be an https address like https://mail.firma.no/EWS/Exchange.asmx."))
    if not allow_private and any(not ip.is_global or ip.is_multicast for ip in ips):
        _bad_endpoint(
            gettext(
                "The EWS address %(host)s leads to an internal network address: give the address your Exchange "
                "server has on the internet."
            )
            % {"host": host}
        )


def _bad_endpoint(message: str) -> NoReturn:
    raise ConnectionProblem(ConnectionErrorCode.INVALID_INPUT, {"message": message}, field="endpoint")


# --- Telenor MBN --------------------------------------------------------------------------------------------------


def save_mbn(
    *, customer: Customer, user: Any, enterprise_id: str, username: str, password: str
) -> ConnectionTestResult:
    """Connect Telenor MBN with Nettsoft's partner client and the customer's API user from Min Bedrift.

    The test signs in, lists the enterprise's subscribers and matches the customer's users (or, before any
    user exists, its calendar groups' members) by e-mail: details `{"subscribers", "matched", "unmatched"}`.
    A blank `password` when editing keeps the stored one. Bad input raises ConnectionProblem with `field`; a
    failing test raises ConnectionProblem with its code, the previous connection kept; on success the
    connection is saved and active and a first sync queued for each calendar source (numbers matched)."""
    enterprise_id, username = enterprise_id.strip(), username.strip()
    if not enterprise_id:
        raise ConnectionProblem(
            ConnectionErrorCode.INVALID_INPUT,
            {"message": gettext("Enter the enterprise id from Min Bedrift.")},
            field="enterprise_id",
        )
    if not username:
        raise ConnectionProblem(
            ConnectionErrorCode.INVALID_INPUT,
            {"message": gettext("Enter the API user's name from Min Bedrift.")},
            field="username",
        )
    existing = MbnConnection.objects.filter(customer=customer).first()
    if not password and not (existing and existing.password_encrypted):
        raise ConnectionProblem(
            ConnectionErrorCode.INVALID_INPUT,
            {"message": gettext("Enter the API user's password.")},
            field="password",
        )
    candidate = MbnConnection(
        pk=existing.pk if existing else None,
        customer=customer,
        enterprise_id=enterprise_id,
        client_id=existing.client_id if existing else "",
        client_secret_encrypted=existing.client_secret_encrypted if existing else "",
        username=username,
        password_encrypted=existing.password_encrypted if existing else "",
        active=existing.active if existing else True,  # staff switch it off when the service ends
        removed_at=None,
    )
    if password:
        candidate.set_secrets(password=password)
    result = _test_mbn(candidate)
    params = {"enterprise_id": enterprise_id, "username": username}
    with transaction.atomic():
        if result.ok:
            if existing is not None:  # the locked row's secrets stay unless new ones were typed (a key rotation
                saved = MbnConnection.objects.select_for_update().get(pk=existing.pk)  # may have re-encrypted them)
                for name in ("enterprise_id", "username", "active", "removed_at"):
                    setattr(saved, name, getattr(candidate, name))
                if candidate.password_encrypted != existing.password_encrypted:
                    saved.password_encrypted = candidate.password_encrypted
                saved.save()
                candidate = saved
            else:
                candidate.save()
            _audit(customer=customer, connection=Connection.MBN, action=Action.SAVED, user=user, params=params)
            _record_test(candidate, result)
            for source in CalendarSource.objects.filter(customer=customer, active=True).exclude(activation_group=""):
                queue_first_sync(source_id=source.pk)
        _audit_test(customer, Connection.MBN, user, result, extra=params)
    if not result.ok:
        raise result.problem()
    return result


# --- testing again ------------------------------------------------------------------------------------------


def test_connection(
    *, customer: Customer, connection: str, user: Any, source_id: int | None = None
) -> ConnectionTestResult:
    """Test a saved connection again ("Test igjen"): the calendar source of that kind (or `source_id`), or the MBN
    connection. The result is stored on it and audited; nothing else changes. Raises ConnectionProblem
    (INVALID_INPUT) when there is nothing of that kind to test."""
    if connection == Connection.MBN:
        mbn = MbnConnection.objects.filter(customer=customer, removed_at__isnull=True).first()
        if mbn is None:
            raise _nothing_to_test()
        result = _test_mbn(mbn)
        with transaction.atomic():
            _record_test(mbn, result)
            _audit_test(customer, Connection.MBN, user, result)
        return result
    if connection not in KIND_OF:
        raise _nothing_to_test()
    source = _saved_source(customer, connection, source_id)
    if source is None:
        raise _nothing_to_test()
    if not source.activation_group:
        result = ConnectionTestResult.failed(
            ConnectionProblem(ConnectionErrorCode.GROUP_NOT_FOUND, {"group": "", "system": SYSTEM_NAMES[connection]})
        )
    else:
        result = _test_source(source)
    with transaction.atomic():
        _record_test(source, result)
        _audit_test(customer, connection, user, result)
    return result


# Not a test (pytest collects functions named test_* it finds imported in a test module).
test_connection.__test__ = False  # type: ignore[attr-defined]


def _saved_source(customer: Customer, connection: str, source_id: int | None) -> CalendarSource | None:
    """The customer's connected source of that kind (`source_id`, or the first), None when there is none."""
    if connection not in KIND_OF:
        return None
    sources = CalendarSource.objects.filter(
        customer=customer, kind=KIND_OF[Connection(connection)], removed_at__isnull=True
    )
    return (sources.filter(pk=source_id) if source_id is not None else sources.order_by("pk")).first()


def remove_connection(*, customer: Customer, connection: str, user: Any, source_id: int | None = None) -> None:
    """Disconnect ("Koble fra"): a calendar source is deactivated and marked disconnected, and its users stopped
    as when they leave the activation group (our absences removed from MBN, their subscriptions ended); its
    tenant or domain is free again for whoever owns it. The MBN connection is marked disconnected: nothing is
    pushed until it is saved again (absences already on MBN stay until they end). Audited as `removed`. Raises
    ConnectionProblem(INVALID_INPUT) when nothing of that kind is connected."""
    now = timezone.now()
    if connection == Connection.MBN:
        with transaction.atomic():
            mbn = MbnConnection.objects.select_for_update().filter(customer=customer, removed_at__isnull=True).first()
            if mbn is None:
                raise _nothing_to_test()
            MbnConnection.objects.filter(pk=mbn.pk).update(removed_at=now)
            params = {"enterprise_id": mbn.enterprise_id}
            _audit(customer=customer, connection=connection, action=Action.REMOVED, user=user, params=params)
        return
    with transaction.atomic():
        source = _saved_source(customer, connection, source_id)
        if source is None:
            raise _nothing_to_test()
        source.active = False
        source.removed_at = now
        source.save(update_fields=["active", "removed_at"])
        for service_user in ServiceUser.objects.filter(customer=customer, active=True, calendar__source=source):
            service_user.active = False  # one by one, so the history that billing reads records each change
            service_user.save(update_fields=["active"])
        _audit(
            customer=customer,
            connection=connection,
            action=Action.REMOVED,
            user=user,
            params={"tenant": source.tenant_id, "group": source.activation_group},
        )
        update_service_states(customer=customer)  # their stops are queued after commit


def removed_words(connection: str) -> str:
    """What disconnecting did, in words for the one who clicked "Koble fra" (portal and admin)."""
    if connection == Connection.MBN:
        return gettext(
            "Telenor MBN is disconnected: nothing more is sent there. Absences already sent stay until they end."
        )
    return gettext(
        "Disconnected. Its users are being stopped and their absences removed from Telenor MBN; connect again "
        "whenever you are ready."
    )


def _nothing_to_test() -> ConnectionProblem:
    return ConnectionProblem(
        ConnectionErrorCode.INVALID_INPUT, {"message": gettext("Nothing of this kind is connected yet.")}
    )


# --- the tests themselves -------------------------------------------------------------------------------------


def _connection_of(source: CalendarSource) -> str:
    return {
        CalendarSource.Kind.GRAPH: Connection.MICROSOFT365,
        CalendarSource.Kind.GOOGLE: Connection.GOOGLE,
        CalendarSource.Kind.EWS: Connection.EWS,
    }[CalendarSource.Kind(source.kind)]


def _test_source(source: CalendarSource) -> ConnectionTestResult:
    """Sign in, read the activation group (name and members) and one member's calendar for the next hour."""
    connection = _connection_of(source)
    system = SYSTEM_NAMES[connection]
    if source.uses_nettsoft_app and connection == Connection.MICROSOFT365 and not nettsoft_graph_configured():
        return ConnectionTestResult.failed(ConnectionProblem(ConnectionErrorCode.NOT_CONFIGURED, {"system": system}))
    if source.uses_nettsoft_app and connection == Connection.GOOGLE and _service_account_info() is None:
        return ConnectionTestResult.failed(ConnectionProblem(ConnectionErrorCode.NOT_CONFIGURED, {"system": system}))
    group = source.activation_group
    stage = "group"
    try:
        provider = pipeline.new_provider(source)
        group_name = group
        if connection == Connection.MICROSOFT365:
            found = provider.group(group)
            if found is None:
                raise ConnectionProblem(ConnectionErrorCode.GROUP_NOT_FOUND, {"group": group, "system": system})
            group_name = found.name
        members = provider.list_users(group)
        if not members:
            raise ConnectionProblem(ConnectionErrorCode.GROUP_EMPTY, {"group": group_name, "system": system})
        stage = "calendar"
        first = members[0]
        now = dt.datetime.now(dt.UTC)
        reads = provider.read_events([first.id], now, now + dt.timedelta(hours=1))
        failure = getattr(reads, "failures", {}).get(first.id)
        if failure is not None:
            raise failure
        if first.id not in reads:
            raise ConnectionProblem(ConnectionErrorCode.CALENDAR_UNREADABLE, {"user": first.email, "system": system})
    except ConnectionProblem as problem:
        return ConnectionTestResult.failed(problem)
    except ProviderError as error:
        subject = {"group": group} if stage == "group" else {"user": first.email}
        return ConnectionTestResult.failed(_provider_problem(error, connection, source=source, stage=stage, **subject))
    except Exception as error:  # a broken setting or answer: reported in words, never a crash of the page
        return ConnectionTestResult.failed(
            ConnectionProblem(ConnectionErrorCode.REQUEST_FAILED, {"system": system, "detail": str(error)[:300]})
        )
    return ConnectionTestResult.passed({"group_name": group_name, "members": len(members)})


def _provider_problem(
    error: ProviderError,
    connection: str,
    *,
    source: CalendarSource | None = None,
    stage: str = "group",
    group: str = "",
    user: str = "",
) -> ConnectionProblem:
    """The connection error for a provider's failure, by what was being done (`stage`: "group" or "calendar")."""
    system = SYSTEM_NAMES[connection]
    username = source.username if source is not None else ""
    if connection == Connection.GOOGLE and isinstance(error, PermissionMissing):
        if error.permission == "domain-wide delegation":  # the token was refused: unauthorized_client
            return ConnectionProblem(
                ConnectionErrorCode.GOOGLE_DELEGATION_MISSING, {"client_id": google_setup_info().client_id}
            )
        if stage == "group":  # signed in as the address given, which may not read the directory's groups
            admin = source.admin_subject if source is not None else ""
            message = gettext(
                "%(address)s may not read the domain's groups: give the address of a Google Workspace administrator."
            ) % {"address": admin}
            return ConnectionProblem(ConnectionErrorCode.INVALID_INPUT, {"message": message}, field="admin_subject")
    if connection == Connection.EWS:
        if isinstance(error, AuthError):
            return ConnectionProblem(ConnectionErrorCode.EWS_LOGIN_FAILED, {"username": username}, field="password")
        if isinstance(error, PermissionMissing):
            return ConnectionProblem(
                ConnectionErrorCode.EWS_IMPERSONATION_DENIED, {"username": username, "user": user or group}
            )
        if isinstance(error, TemporaryError) and not isinstance(error, Throttled):
            endpoint = source.endpoint if source is not None else ""
            return ConnectionProblem(ConnectionErrorCode.EWS_UNREACHABLE, {"endpoint": endpoint}, field="endpoint")
    if isinstance(error, AuthError):
        return ConnectionProblem(ConnectionErrorCode.TOKEN_REFUSED, {"system": system})
    if isinstance(error, NotFound) and stage == "group":
        return ConnectionProblem(ConnectionErrorCode.GROUP_NOT_FOUND, {"group": group, "system": system}, field="group")
    if stage == "calendar" and (isinstance(error, NotFound) or error.error_code == SyncErrorCode.MAILBOX_OUT_OF_SCOPE):
        return ConnectionProblem(ConnectionErrorCode.CALENDAR_UNREADABLE, {"user": user, "system": system})
    if isinstance(error, PermissionMissing):
        if stage == "calendar":
            return ConnectionProblem(ConnectionErrorCode.CALENDAR_UNREADABLE, {"user": user, "system": system})
        return ConnectionProblem(
            ConnectionErrorCode.PERMISSION_MISSING, {"permission": error.permission, "system": system}
        )
    if error.error_code == SyncErrorCode.TIMEOUT or isinstance(error, Throttled | TemporaryError):
        return ConnectionProblem(ConnectionErrorCode.TIMEOUT, {"system": system})
    return ConnectionProblem(ConnectionErrorCode.REQUEST_FAILED, {"system": system, "detail": str(error)[:300]})


def _mbn_client(connection: MbnConnection) -> MbnClient:
    """A fresh client for a test (never the sync's cached one: a changed password must really be tried)."""
    client_id, client_secret = pipeline.mbn_credentials(connection)
    return MbnClient(
        settings.MBN_BASE_URL,
        connection.enterprise_id,
        client_id,
        client_secret,
        connection.username,
        connection.password(),
    )


def _test_mbn(connection: MbnConnection) -> ConnectionTestResult:
    """Sign in, list the enterprise's subscribers and match the customer's people by e-mail."""
    if not settings.MBN_BASE_URL or not all(pipeline.mbn_credentials(connection)):
        return ConnectionTestResult.failed(
            ConnectionProblem(ConnectionErrorCode.NOT_CONFIGURED, {"system": "Telenor MBN"})
        )
    client = _mbn_client(connection)
    try:
        client.sign_in()
    except MbnAuthError:
        return ConnectionTestResult.failed(
            ConnectionProblem(ConnectionErrorCode.MBN_LOGIN_FAILED, {"username": connection.username}, field="password")
        )
    except MbnError:
        return ConnectionTestResult.failed(ConnectionProblem(ConnectionErrorCode.MBN_UNREACHABLE))
    try:
        subscribers = client.subscribers()
    except (MbnAuthError, MbnNotFound):  # signed in, but the enterprise is not this API user's (403) or unknown
        return ConnectionTestResult.failed(
            ConnectionProblem(
                ConnectionErrorCode.MBN_ENTERPRISE_NOT_FOUND,
                {"enterprise_id": connection.enterprise_id},
                field="enterprise_id",
            )
        )
    except MbnUnavailable:
        return ConnectionTestResult.failed(ConnectionProblem(ConnectionErrorCode.MBN_UNREACHABLE))
    except MbnError as error:
        return ConnectionTestResult.failed(
            ConnectionProblem(ConnectionErrorCode.REQUEST_FAILED, {"system": "Telenor MBN", "detail": str(error)[:300]})
        )
    people = _people_to_match(connection.customer)
    manual = {person.id: number for person, number in people if number}
    found = match_subscribers([person for person, _number in people], subscribers, manual=manual)
    unmatched = [{"name": person.name, "email": person.email} for person, _number in people if not found.get(person.id)]
    return ConnectionTestResult.passed(
        {
            "subscribers": len(subscribers),
            "matched": len(people) - len(unmatched),
            "unmatched": unmatched[:UNMATCHED_SHOWN],
        }
    )


def _people_to_match(customer: Customer) -> list[tuple[DirectoryUser, str]]:
    """The customer's active users (with a number set by hand), or — before the first sync made any — the
    members of its connected calendar groups."""
    users = list(ServiceUser.objects.filter(customer=customer, active=True).order_by("email"))
    if users:
        return [(DirectoryUser(str(u.pk), u.email, u.name), u.msisdn if u.msisdn_set_by_hand else "") for u in users]
    people: dict[str, DirectoryUser] = {}
    for source in CalendarSource.objects.filter(customer=customer, active=True).exclude(activation_group=""):
        try:
            members = pipeline.new_provider(source).list_users(source.activation_group)
        except ProviderError:
            continue  # that source's own test says what is wrong
        for member in members:
            email = (member.email or "").strip().lower()
            if email:
                people.setdefault(email, DirectoryUser(email, email, member.name))
    return [(person, "") for person in sorted(people.values(), key=lambda p: p.email)]


# --- saving a tested calendar source ----------------------------------------------------------------------------


def _first_source(customer: Customer, kind: str) -> CalendarSource | None:
    """The customer's (first, not disconnected) calendar source of that kind."""
    return CalendarSource.objects.filter(customer=customer, kind=kind, removed_at__isnull=True).order_by("pk").first()


def _unsaved_copy(source: CalendarSource, **changes: Any) -> CalendarSource:
    """A copy of the source with `changes`, for testing before anything is saved (same pk: saving it updates)."""
    copy = CalendarSource(
        pk=source.pk,
        customer=source.customer,
        kind=source.kind,
        tenant_id=source.tenant_id,
        client_id=source.client_id,
        endpoint=source.endpoint,
        username=source.username,
        admin_subject=source.admin_subject,
        secret_encrypted=source.secret_encrypted,
        uses_nettsoft_app=source.uses_nettsoft_app,
        activation_group=source.activation_group,
        active=source.active,
        sweep_minutes=source.sweep_minutes,
    )
    for name, value in changes.items():
        setattr(copy, name, value)
    return copy


def _save_tested_source(
    customer: Customer,
    user: Any,
    connection: str,
    existing: CalendarSource | None,
    candidate: CalendarSource,
    values: Mapping[str, str],
) -> ConnectionTestResult:
    result = _test_source(candidate)
    with transaction.atomic():
        if result.ok:
            if existing is None:
                candidate.pk = None
                candidate.active = True
                candidate.save()
            else:
                source = CalendarSource.objects.select_for_update().get(pk=existing.pk)
                for name in ("endpoint", "username", "admin_subject", "uses_nettsoft_app"):
                    setattr(source, name, getattr(candidate, name))
                if candidate.secret_encrypted != existing.secret_encrypted:  # a new secret was typed; otherwise the
                    source.secret_encrypted = candidate.secret_encrypted  # locked row's (perhaps re-encrypted) stays
                source.activation_group = candidate.activation_group
                source.active = True
                source.last_error, source.last_error_code, source.last_error_params = "", "", {}
                source.save()
                candidate = source
            _audit(customer=customer, connection=connection, action=Action.SAVED, user=user, params=dict(values))
            _record_test(candidate, result)
            queue_first_sync(source_id=candidate.pk)
        # a failed edit leaves the saved connection as it was, its last test included: only the audit row
        _audit_test(customer, connection, user, result, extra=values)
    if not result.ok:
        raise result.problem()
    return result


def _audit_test(
    customer: Customer, connection: str, user: Any, result: ConnectionTestResult, *, extra: Mapping[str, Any] = {}
) -> None:
    details = {key: value for key, value in result.details.items() if key != "unmatched"}
    _audit(
        customer=customer,
        connection=connection,
        action=Action.TEST_PASSED if result.ok else Action.TEST_FAILED,
        user=user,
        error_code=result.code,
        params={**extra, **result.params, **details},
    )


def _require_email(value: str, field_name: str, message: str) -> None:
    try:
        EmailValidator()(value)
    except ValidationError:
        raise ConnectionProblem(ConnectionErrorCode.INVALID_INPUT, {"message": message}, field=field_name) from None


# --- selectors ----------------------------------------------------------------------------------------------------


def customer_connections(*, customer: Customer) -> list[ConnectionStatus]:
    """The four connections of the customer, in the order microsoft365, google, ews, mbn, each with its state."""
    sources: dict[str, CalendarSource] = {}
    for source in CalendarSource.objects.filter(customer=customer, removed_at__isnull=True).order_by("pk"):
        sources.setdefault(_connection_of(source), source)
    statuses = []
    for connection in CONNECTIONS:
        label = str(Connection(connection).label)
        if connection == Connection.MBN:
            mbn = MbnConnection.objects.filter(customer=customer, removed_at__isnull=True).first()
            statuses.append(_mbn_status(mbn, label))
            continue
        statuses.append(_source_status(sources.get(connection), connection, label))
    return statuses


def _state_and_words(target: CalendarSource | MbnConnection, sync_code: str = "") -> tuple[str, str, str]:
    if target.tested_at is None:
        state = "untested"
    elif target.test_ok:
        state = "working"
    else:
        what, what_to_do = describe_connection_error(target.test_error_code, target.test_error_params)
        return "failing", what, what_to_do
    if sync_code:  # the connection test passed (or never ran) but the last sync failed
        title, advice = describe(sync_code)
        return "failing", title, advice
    return state, "", ""


def _source_status(source: CalendarSource | None, connection: str, label: str) -> ConnectionStatus:
    if source is None:
        return ConnectionStatus(connection=connection, label=label, state="not_connected")
    values = {
        Connection.MICROSOFT365: {"tenant_id": source.tenant_id, "group": source.activation_group},
        Connection.GOOGLE: {"admin_subject": source.admin_subject, "group": source.activation_group},
        Connection.EWS: {"endpoint": source.endpoint, "username": source.username, "group": source.activation_group},
    }[Connection(connection)]
    group_name = str(source.test_details.get("group_name") or source.activation_group)
    if connection == Connection.MICROSOFT365:
        summary = f"{source.tenant_id} · {group_name}" if source.activation_group else source.tenant_id
    else:
        summary = group_name
    if not source.activation_group:
        state, what, what_to_do = "awaiting_group", "", ""
    else:
        state, what, what_to_do = _state_and_words(source, source.last_error_code)
    return ConnectionStatus(
        connection=connection,
        label=label,
        state=state,
        source_id=source.pk,
        summary=summary,
        last_success_at=source.last_success_at,
        tested_at=source.tested_at,
        what=what,
        what_to_do=what_to_do,
        details=dict(source.test_details),
        values=values,
        has_secret=bool(source.secret_encrypted),
        uses_nettsoft_app=source.uses_nettsoft_app,
    )


def _mbn_status(mbn: MbnConnection | None, label: str) -> ConnectionStatus:
    if mbn is None:
        return ConnectionStatus(connection=Connection.MBN, label=label, state="not_connected")
    state, what, what_to_do = _state_and_words(mbn)
    last_success = mbn.tested_at if mbn.test_ok else None
    return ConnectionStatus(
        connection=Connection.MBN,
        label=label,
        state=state,
        summary=mbn.enterprise_id,
        last_success_at=last_success,
        tested_at=mbn.tested_at,
        what=what,
        what_to_do=what_to_do,
        details=dict(mbn.test_details),
        values={"enterprise_id": mbn.enterprise_id, "username": mbn.username},
        has_secret=bool(mbn.password_encrypted),
        uses_nettsoft_app=not mbn.client_id,
    )


def connection_events(*, customer: Customer, limit: int = 50) -> Sequence[ConnectionEvent]:
    """The customer's connection audit, newest first (with the acting user)."""
    return list(
        ConnectionEvent.objects.filter(customer=customer).select_related("actor").order_by("-at", "-id")[:limit]
    )


# Words the UI may want for a state, in one place.
STATE_LABELS = {
    "working": _("Working"),
    "failing": _("Failing"),
    "untested": _("Never tested"),
    "not_connected": _("Not connected"),
    "awaiting_group": _("Choose a group"),
}
