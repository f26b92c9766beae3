"""The absence-profile catalogue: the `&` codes of calendar-rules.md §1, as editable data."""

import re
from collections import defaultdict

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords

from customers.models import MEETING_PROFILE_KEY, UNAVAILABLE_PROFILE_KEY
from sync.crypto import decrypt, encrypt
from sync.errors import ConnectionErrorCode, SyncErrorCode, describe_connection_error

_TOKEN = re.compile(r"^[^\W\d_]+( [^\W\d_]+)*$")


def validate_profile_token(value: str) -> None:
    """A short code or full name: letters, with single spaces between words (no '&', '+', '-')."""
    if not _TOKEN.match(value):
        raise ValidationError(
            _("“%(value)s” can only contain letters, with single spaces between words."),
            params={"value": value},
            code="invalid_token",
        )


class AbsenceProfile(models.Model):
    # Keys of the profiles the application itself needs (new customers' defaults, customers.models), set by
    # migration sync.0009 on the seeded rows; names and codes stay editable in admin.
    MEETING = MEETING_PROFILE_KEY
    UNAVAILABLE = UNAVAILABLE_PROFILE_KEY

    key = models.SlugField(
        _("key"),
        max_length=30,
        unique=True,
        null=True,
        blank=True,
        editable=False,
        help_text=_("How the application finds a profile it needs; renaming the profile does not change it."),
    )
    short_code = models.CharField(
        _("short code"),
        max_length=20,
        validators=[validate_profile_token],
        help_text=_("Written after & in a subject, e.g. “For” for &For."),
    )
    full_name = models.CharField(
        _("full name"),
        max_length=60,
        validators=[validate_profile_token],
        help_text=_("May be written in full after &, e.g. &Forretningsreise."),
    )
    profile = models.CharField(_("profile shown"), max_length=60)
    mbn_reason = models.CharField(_("MBN reason"), max_length=60)
    position = models.PositiveSmallIntegerField(_("position"), default=0)

    class Meta:
        verbose_name = _("absence profile")
        verbose_name_plural = _("absence profiles")
        ordering = ["position", "full_name"]
        constraints = [
            models.UniqueConstraint(
                Lower("short_code"),
                name="absenceprofile_short_code_ci_unique",
                violation_error_message=_("Another profile already has this short code."),
            ),
            models.UniqueConstraint(
                Lower("full_name"),
                name="absenceprofile_full_name_ci_unique",
                violation_error_message=_("Another profile already has this full name."),
            ),
        ]

    def __str__(self) -> str:
        return self.profile


# What the last connection test left on a CalendarSource or MbnConnection (sync.connections writes them).
TEST_STATE_FIELDS = ("tested_at", "test_ok", "test_error_code", "test_error_params", "test_details")


class CalendarSource(models.Model):
    """Where a customer's calendars come from, with its credentials encrypted at rest."""

    class Kind(models.TextChoices):
        GRAPH = "graph", _("Microsoft 365 / Exchange Online (Graph)")
        EWS = "ews", _("Exchange on-premises (EWS)")
        GOOGLE = "google", _("Google Workspace")

    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.CASCADE, related_name="calendar_sources", verbose_name=_("customer")
    )
    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices, default=Kind.GRAPH)
    tenant_id = models.CharField(_("tenant id"), max_length=100, blank=True, help_text=_("Entra ID directory id."))
    client_id = models.CharField(_("client id"), max_length=200, blank=True)
    endpoint = models.URLField(
        _("EWS endpoint"), blank=True, help_text=_("Exchange on-premises: https://mail.firma.no/EWS/Exchange.asmx")
    )
    username = models.CharField(
        _("service account"),
        max_length=200,
        blank=True,
        help_text=_("Exchange on-premises: the account with the impersonation right."),
    )
    admin_subject = models.EmailField(
        _("Google admin"),
        blank=True,
        help_text=_("Google Workspace: an administrator the service account acts as to read group members."),
    )
    secret_encrypted = models.TextField(_("secret (encrypted)"), blank=True, editable=False)
    uses_nettsoft_app = models.BooleanField(
        _("uses Nettsoft's app"),
        default=False,
        help_text=_(
            "Signs in with Nettsoft's multi-tenant app (Microsoft 365, by admin consent) or service account "
            "(Google) from the settings, instead of the client id and secret stored here."
        ),
    )
    activation_group = models.CharField(
        _("activation group"),
        max_length=200,
        blank=True,
        help_text=_("The group whose members get the service."),
    )
    active = models.BooleanField(_("active"), default=True)
    sweep_minutes = models.PositiveSmallIntegerField(_("sweep every (minutes)"), default=5)
    last_success_at = models.DateTimeField(_("last successful sync"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    last_error_code = models.CharField(_("last error code"), max_length=40, choices=SyncErrorCode.choices, blank=True)
    last_error_params = models.JSONField(_("last error parameters"), default=dict, blank=True)
    tested_at = models.DateTimeField(_("connection tested"), null=True, blank=True, editable=False)
    test_ok = models.BooleanField(_("connection test passed"), null=True, blank=True, editable=False)
    test_error_code = models.CharField(
        _("connection test error"), max_length=40, choices=ConnectionErrorCode.choices, blank=True, editable=False
    )
    test_error_params = models.JSONField(
        _("connection test error parameters"), default=dict, blank=True, editable=False
    )
    test_details = models.JSONField(_("connection test details"), default=dict, blank=True, editable=False)
    removed_at = models.DateTimeField(
        _("disconnected"),
        null=True,
        blank=True,
        editable=False,
        help_text=_("Set when the customer disconnected it (“Koble fra”): inactive, its users stopped."),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    # Not the secret, not even encrypted; not the sync bookkeeping either (written on every sync with
    # QuerySet.update, so a history diff would pin the sync's changes on whoever edits the source next);
    # connection tests are audited in ConnectionEvent.
    history = HistoricalRecords(
        excluded_fields=[
            "secret_encrypted",
            "last_success_at",
            "last_error",
            "last_error_code",
            "last_error_params",
            *TEST_STATE_FIELDS,
        ]
    )

    class Meta:
        verbose_name = _("calendar source")
        verbose_name_plural = _("calendar sources")
        ordering = ["customer", "kind"]
        constraints = [
            # Nettsoft's app reaches every tenant that consented to it: one customer per tenant, or a customer
            # could read another's groups and calendars by naming its tenant (sync.connections checks it first).
            models.UniqueConstraint(
                Lower("tenant_id"),
                condition=Q(kind="graph", uses_nettsoft_app=True, removed_at__isnull=True) & ~Q(tenant_id=""),
                name="sync_one_customer_per_nettsoft_graph_tenant",
                violation_error_message=_(
                    "Another customer is already connected to this Microsoft 365 organisation through Nettsoft's app."
                ),
            )
        ]

    def __str__(self) -> str:
        return f"{self.customer.name}: {self.get_kind_display()}"

    @property
    def activation_group_kind(self) -> str:
        """What `activation_group` names in this calendar system: an Entra ID group's id, or a group's address."""
        kinds = {
            self.Kind.GRAPH: _("Entra ID group"),
            self.Kind.EWS: _("Exchange distribution group"),
            self.Kind.GOOGLE: _("Google group"),
        }
        return str(kinds[self.Kind(self.kind)])

    def set_secret(self, secret: str) -> None:
        self.secret_encrypted = encrypt(secret)

    def secret(self) -> str:
        return decrypt(self.secret_encrypted)


class MbnConnection(models.Model):
    """A customer's Telenor MBN API access: enterprise id and the four secrets of mbn-api.md."""

    customer = models.OneToOneField(
        "customers.Customer", on_delete=models.CASCADE, related_name="mbn_connection", verbose_name=_("customer")
    )
    enterprise_id = models.CharField(_("enterprise id"), max_length=100)
    client_id = models.CharField(
        _("client id"),
        max_length=200,
        blank=True,
        help_text=_("Blank: Nettsoft's MBN partner client id and secret from the settings are used."),
    )
    client_secret_encrypted = models.TextField(_("client secret (encrypted)"), blank=True, editable=False)
    username = models.CharField(_("API user"), max_length=200)
    password_encrypted = models.TextField(_("password (encrypted)"), blank=True, editable=False)
    active = models.BooleanField(
        _("active"), default=True, help_text=_("Set off when the customer's service ends: nothing is pushed any more.")
    )
    tested_at = models.DateTimeField(_("connection tested"), null=True, blank=True, editable=False)
    test_ok = models.BooleanField(_("connection test passed"), null=True, blank=True, editable=False)
    test_error_code = models.CharField(
        _("connection test error"), max_length=40, choices=ConnectionErrorCode.choices, blank=True, editable=False
    )
    test_error_params = models.JSONField(
        _("connection test error parameters"), default=dict, blank=True, editable=False
    )
    test_details = models.JSONField(_("connection test details"), default=dict, blank=True, editable=False)
    removed_at = models.DateTimeField(
        _("disconnected"),
        null=True,
        blank=True,
        editable=False,
        help_text=_("Set when the customer disconnected it (“Koble fra”): nothing is pushed until it is saved again."),
    )

    class Meta:
        verbose_name = _("MBN connection")
        verbose_name_plural = _("MBN connections")

    def __str__(self) -> str:
        return f"{self.customer.name}: {self.enterprise_id}"

    def set_secrets(self, *, client_secret: str | None = None, password: str | None = None) -> None:
        if client_secret:
            self.client_secret_encrypted = encrypt(client_secret)
        if password:
            self.password_encrypted = encrypt(password)

    def client_secret(self) -> str:
        return decrypt(self.client_secret_encrypted)

    def password(self) -> str:
        return decrypt(self.password_encrypted)


class CalendarUser(models.Model):
    """Sync state of one service user's calendar: provider id, subscription, lock."""

    service_user = models.OneToOneField(
        "customers.ServiceUser", on_delete=models.CASCADE, related_name="calendar", verbose_name=_("service user")
    )
    source = models.ForeignKey(
        CalendarSource, on_delete=models.CASCADE, related_name="users", verbose_name=_("calendar source")
    )
    provider_user_id = models.CharField(_("provider user id"), max_length=200)
    subscription_id = models.CharField(_("change subscription"), max_length=200, blank=True)
    subscription_expires = models.DateTimeField(_("subscription expires"), null=True, blank=True)
    client_state = models.CharField(_("client state"), max_length=64, blank=True, editable=False)
    locked_until = models.DateTimeField(_("locked until"), null=True, blank=True)
    # Set before the first MBN write of a push and cleared with the stored result: while set, MBN may
    # hold absences we have not recorded (a crash or a throttle mid-push), so the next push reads MBN first.
    mbn_unsure = models.BooleanField(_("MBN state unsure"), default=False, editable=False)
    changed_at = models.DateTimeField(_("change noticed"), null=True, blank=True)
    last_synced_at = models.DateTimeField(_("last synced"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    last_error_code = models.CharField(_("last error code"), max_length=40, choices=SyncErrorCode.choices, blank=True)
    last_error_params = models.JSONField(_("last error parameters"), default=dict, blank=True)
    last_error_at = models.DateTimeField(_("last error at"), null=True, blank=True)
    # Incremental reads (sync.event_state): the provider's cursor (a Graph deltaLink, a Google sync token, an EWS
    # sync state), the calendar's events as the engine needs them (no subjects), and the last full read, which
    # comes back once a day at an hour of the user's own (`sync.pipeline.full_read_due`).
    delta_cursor = models.TextField(_("delta cursor"), blank=True, editable=False)
    event_state = models.JSONField(_("stored calendar state"), null=True, blank=True, editable=False)
    full_read_at = models.DateTimeField(_("last full read"), null=True, blank=True, editable=False)
    # EWS streaming (`sync.streaming`): the listener's heartbeat for a mailbox it holds a live subscription for
    # (`streamed_until`, refreshed in bulk), and since when that subscription has run. While the heartbeat is fresh
    # and the calendar was read after `streamed_since`, the sweep does not poll it (`sync.pipeline.streamed`).
    streamed_since = models.DateTimeField(_("streamed since"), null=True, blank=True, editable=False)
    streamed_until = models.DateTimeField(_("streamed until"), null=True, blank=True, editable=False)
    # Change notifications (a Graph subscription, a Google watch channel): since when the current one has run. While
    # it is live and the calendar was read after this, the sweep reads the calendar only at its hourly slot
    # (`sync.pipeline.sweep_reads`): the notifications say what changed, the hourly read catches one that was lost.
    push_since = models.DateTimeField(_("notified since"), null=True, blank=True, editable=False)
    # When time alone changes the engine's answer for the stored events (an event entering the horizon): the sweep
    # takes the user then, whatever the notifications say (`sync.event_state.due_after`).
    recompute_at = models.DateTimeField(_("recompute at"), null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("calendar user")
        verbose_name_plural = _("calendar users")
        constraints = [
            models.UniqueConstraint(fields=["source", "provider_user_id"], name="calendaruser_unique_per_source")
        ]

    def __str__(self) -> str:
        return str(self.service_user)


class PushedAbsence(models.Model):
    """What we last put on MBN for a user (compared with the engine's output before any call)."""

    service_user = models.ForeignKey(
        "customers.ServiceUser",
        on_delete=models.CASCADE,
        related_name="pushed_absences",
        verbose_name=_("service user"),
    )
    mbn_id = models.CharField(_("MBN id"), max_length=100)
    external_ref = models.CharField(_("reference"), max_length=100)
    start = models.DateTimeField(_("start"))
    end = models.DateTimeField(_("end"))
    reason = models.CharField(_("MBN reason"), max_length=60)
    diversion = models.CharField(_("diversion"), max_length=10)

    class Meta:
        verbose_name = _("pushed absence")
        verbose_name_plural = _("pushed absences")
        ordering = ["service_user", "start"]
        constraints = [
            models.UniqueConstraint(fields=["service_user", "external_ref"], name="pushedabsence_unique_ref")
        ]

    def __str__(self) -> str:
        return f"{self.reason} {self.start:%d.%m %H:%M}–{self.end:%H:%M}"


class SyncRun(models.Model):
    """One sync of one user, or one cycle of a source: times, counts, errors, change-to-MBN latency."""

    class Kind(models.TextChoices):
        USER = "user", _("User")
        CYCLE = "cycle", _("Source cycle")

    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices, default=Kind.USER)
    source = models.ForeignKey(
        CalendarSource, on_delete=models.CASCADE, related_name="runs", verbose_name=_("calendar source")
    )
    service_user = models.ForeignKey(
        "customers.ServiceUser",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="sync_runs",
        verbose_name=_("service user"),
    )
    started_at = models.DateTimeField(_("started"))
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    events_read = models.PositiveIntegerField(_("events read"), default=0)
    created = models.PositiveIntegerField(_("created"), default=0)
    updated = models.PositiveIntegerField(_("updated"), default=0)
    deleted = models.PositiveIntegerField(_("deleted"), default=0)
    mbn_requests = models.PositiveIntegerField(_("MBN requests"), default=0)
    latency_ms = models.PositiveIntegerField(_("change to MBN (ms)"), null=True, blank=True)
    error = models.TextField(_("error"), blank=True)
    error_code = models.CharField(_("error code"), max_length=40, choices=SyncErrorCode.choices, blank=True)
    error_params = models.JSONField(_("error parameters"), default=dict, blank=True)

    class Meta:
        verbose_name = _("sync run")
        verbose_name_plural = _("sync runs")
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["started_at"]), models.Index(fields=["source", "-started_at"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.started_at:%d.%m.%Y %H:%M:%S}"


class ConnectionEvent(models.Model):
    """One step, success or failure of connecting a customer's calendar system or MBN (append-only audit)."""

    class Connection(models.TextChoices):
        MICROSOFT365 = "microsoft365", _("Microsoft 365")
        GOOGLE = "google", _("Google Workspace")
        EWS = "ews", _("Exchange on-premises")
        MBN = "mbn", _("Telenor MBN")

    class Action(models.TextChoices):
        CONSENT_STARTED = "consent_started", _("Consent started")
        CONSENT_GRANTED = "consent_granted", _("Consent granted")
        CONSENT_REFUSED = "consent_refused", _("Consent refused")
        CONSENT_REJECTED = "consent_rejected", _("Consent answer rejected")
        GROUP_CHOSEN = "group_chosen", _("Group chosen")
        SAVED = "saved", _("Saved")
        TEST_PASSED = "test_passed", _("Test passed")
        TEST_FAILED = "test_failed", _("Test failed")
        REMOVED = "removed", _("Removed")

    customer = models.ForeignKey(
        "customers.Customer",
        on_delete=models.CASCADE,
        related_name="connection_events",
        verbose_name=_("customer"),
    )
    connection = models.CharField(_("connection"), max_length=20, choices=Connection.choices)
    action = models.CharField(_("action"), max_length=20, choices=Action.choices)
    error_code = models.CharField(_("error code"), max_length=40, choices=ConnectionErrorCode.choices, blank=True)
    params = models.JSONField(_("details"), default=dict, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("by"),
    )
    at = models.DateTimeField(_("at"), default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("connection event")
        verbose_name_plural = _("connection events")
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["customer", "-at"])]

    def __str__(self) -> str:
        return f"{self.get_connection_display()}: {self.get_action_display()}"

    def describe(self) -> str:
        """The event as a sentence people read (Norwegian in the portal), with the error worded when it failed."""
        values = defaultdict(str, {key: str(value) for key, value in self.params.items()})
        sentence = _EVENT_SENTENCES.get(ConnectionEvent.Action(self.action)) if self.action in _ACTIONS else None
        text = str(sentence or self.get_action_display()) % values
        if self.error_code:
            what, _what_to_do = describe_connection_error(self.error_code, self.params)
            text = f"{text}: {what}"
        return text


_ACTIONS = set(ConnectionEvent.Action.values)
_EVENT_SENTENCES = {
    ConnectionEvent.Action.CONSENT_STARTED: _("Sent an administrator to Microsoft to consent"),
    ConnectionEvent.Action.CONSENT_GRANTED: _("An administrator consented for the organisation %(tenant)s"),
    ConnectionEvent.Action.CONSENT_REFUSED: _("The administrator refused consent"),
    ConnectionEvent.Action.CONSENT_REJECTED: _("An answer from Microsoft was rejected"),
    ConnectionEvent.Action.GROUP_CHOSEN: _("Chose the group “%(group)s”"),
    ConnectionEvent.Action.SAVED: _("Saved the connection"),
    ConnectionEvent.Action.TEST_PASSED: _("The connection test passed"),
    ConnectionEvent.Action.TEST_FAILED: _("The connection test failed"),
    ConnectionEvent.Action.REMOVED: _("Removed the connection"),
}


class ConsentRequest(models.Model):
    """One "Koble til Microsoft 365" click: the state sent to Microsoft's admin-consent page, kept only as its
    sha256, bound to the customer, the user and the browser session, single use, valid for a short while."""

    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.CASCADE, related_name="+", verbose_name=_("customer")
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", verbose_name=_("user")
    )
    session_key_hash = models.CharField(_("session (sha256)"), max_length=64)
    state_hash = models.CharField(_("state (sha256)"), max_length=64, unique=True)
    source = models.ForeignKey(
        CalendarSource,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("calendar source"),
        help_text=_("Consent again for this source: its tenant is the one expected."),
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    used_at = models.DateTimeField(_("used"), null=True, blank=True)

    class Meta:
        verbose_name = _("consent request")
        verbose_name_plural = _("consent requests")

    def __str__(self) -> str:
        return f"{self.customer_id} {self.created_at:%Y-%m-%d %H:%M}"
