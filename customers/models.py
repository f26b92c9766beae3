"""Customers, their contacts, price lists, subscriptions, calendar settings and service users."""

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models, transaction
from django.db.models import Case, CharField, Count, Exists, Max, OuterRef, Q, Subquery, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords

from billing.core import terms
from customers.numbering import take_next_number
from customers.validators import (
    compact_org_number,
    normalize_msisdn,
    validate_msisdn,
    validate_org_number,
    validate_peppol_participant,
    validate_timezone,
)

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

FIRST_CUSTOMER_NUMBER = 10001
NO_SUBSCRIPTION = "none"  # the subscription status of a customer that has never had one


class Term(models.IntegerChoices):
    NONE = 0, _("No term")
    MONTHS_12 = 12, _("12 months")
    MONTHS_24 = 24, _("24 months")
    MONTHS_36 = 36, _("36 months")


class CustomerQuerySet(models.QuerySet["Customer"]):
    """A customer's subscription status, defined once for the staff dashboard's counts and the admin filter
    its figures link to: the status of the open subscription, else "ended" when the customer has only
    ended ones, else NO_SUBSCRIPTION."""

    @staticmethod
    def _subscription_status() -> Coalesce:
        open_status = Subscription.objects.filter(customer=OuterRef("pk")).exclude(status=Subscription.Status.ENDED)
        return Coalesce(
            Subquery(open_status.values("status")[:1]),
            Case(
                When(
                    Exists(Subscription.objects.filter(customer=OuterRef("pk"))),
                    then=Value(Subscription.Status.ENDED.value),
                ),
                default=Value(NO_SUBSCRIPTION),
                output_field=CharField(),
            ),
        )

    def served(self) -> "CustomerQuerySet":
        """The customers whose calendars are synced (`SERVED_CUSTOMER`)."""
        return self.filter(served_customer())

    def with_subscription_status(self) -> "CustomerQuerySet":
        """Annotated with `subscription_status`."""
        return self.annotate(subscription_status=self._subscription_status())

    def in_subscription_status(self, status: str) -> "CustomerQuerySet":
        """The customers whose subscription status is `status` (a Subscription.Status or NO_SUBSCRIPTION)."""
        return self.annotate(subscription_status=self._subscription_status()).filter(subscription_status=status)

    def counts_by_subscription_status(self) -> dict[str, int]:
        """{status: customers}, every Subscription.Status and NO_SUBSCRIPTION present: one query."""
        rows = (
            self.annotate(subscription_status=self._subscription_status())
            .order_by()
            .values("subscription_status")
            .annotate(n=Count("pk"))
        )
        counts = dict.fromkeys([*Subscription.Status.values, NO_SUBSCRIPTION], 0)
        counts.update({row["subscription_status"]: row["n"] for row in rows})
        return counts


def served_customer(prefix: str = "") -> Q:
    """The one definition of a served customer: not paused by staff, and a subscription that is pending
    (onboarding), live or under notice. A customer without one (none yet, or all ended) is not served.
    `prefix` is the path to the customer from the model queried, e.g. "customer__"."""
    customer = OuterRef(f"{prefix}pk" if prefix else "pk")
    open_subscription = Exists(Subscription.objects.filter(customer=customer).exclude(status=Subscription.Status.ENDED))
    return Q(**{f"{prefix}service_paused": False}) & Q(open_subscription)


class Customer(models.Model):
    customer_number = models.PositiveIntegerField(_("customer number"), unique=True, editable=False)
    name = models.CharField(_("name"), max_length=200)
    org_number = models.CharField(
        _("organisation number"),
        max_length=20,
        unique=True,
        validators=[validate_org_number],
        help_text=_("Nine digits from Enhetsregisteret, e.g. 923 609 016."),
        error_messages={"unique": _("A customer with this organisation number already exists.")},
    )
    address_line = models.CharField(_("invoice address"), max_length=200)
    address_line_2 = models.CharField(_("address line 2"), max_length=200, blank=True)
    postal_code = models.CharField(_("postal code"), max_length=10)
    city = models.CharField(_("city"), max_length=100)
    country_code = models.CharField(_("country"), max_length=2, default="NO", help_text=_("ISO 3166 code, e.g. NO."))
    invoice_email = models.EmailField(_("invoice e-mail"))
    peppol_participant = models.CharField(
        _("Peppol participant (EHF)"),
        max_length=60,
        blank=True,
        validators=[validate_peppol_participant],
        help_text=_("Filled in as 0192:<organisation number> when left empty."),
    )
    send_ehf = models.BooleanField(
        _("send invoices as EHF"), default=False, help_text=_("Otherwise invoices go by e-mail as PDF.")
    )
    buyer_reference = models.CharField(
        _("buyer reference"), max_length=100, blank=True, help_text=_("The customer's reference, printed on invoices.")
    )
    service_paused = models.BooleanField(
        _("service paused"),
        default=False,
        help_text=_("Paused by staff: every user is stopped as when the subscription ends, until resumed."),
    )
    ended_at = models.DateTimeField(
        _("service ended"),
        null=True,
        blank=True,
        editable=False,
        help_text=_("When the last subscription ended and every user was stopped; the purge counts from here."),
    )
    purged_at = models.DateTimeField(_("data purged"), null=True, blank=True, editable=False)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    history = HistoricalRecords()

    objects = CustomerQuerySet.as_manager()

    class Meta:
        verbose_name = _("customer")
        verbose_name_plural = _("customers")
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.customer_number})" if self.customer_number else self.name

    def current_subscription(self) -> "Subscription | None":
        """The subscription that has not ended, else the latest one (`Subscription.current_among`)."""
        return Subscription.current_among(self.subscriptions.select_related("price_list").order_by("-signed_on", "-id"))

    def clean(self) -> None:
        self.org_number = compact_org_number(self.org_number)
        self.country_code = (self.country_code or "").upper()
        if not self.peppol_participant and self.org_number and self.country_code == "NO":
            self.peppol_participant = f"0192:{self.org_number}"
        if self.send_ehf and not self.peppol_participant:
            raise ValidationError(
                {"peppol_participant": _("A Peppol participant id is needed to send invoices as EHF.")}
            )

    def save(self, *args, **kwargs) -> None:
        self.org_number = compact_org_number(self.org_number)
        if self.customer_number:
            super().save(*args, **kwargs)
            return
        with transaction.atomic():
            self.customer_number = take_next_number(
                CustomerNumberCounter.objects.all(), not_below=_highest_customer_number
            )
            super().save(*args, **kwargs)


def _highest_customer_number() -> int:
    """The highest customer number in use (the one before the first when there is none)."""
    highest = Customer.objects.aggregate(n=Max("customer_number"))["n"]
    return int(highest or FIRST_CUSTOMER_NUMBER - 1)


class CustomerNumberCounter(models.Model):
    """The last customer number given; its one row is locked while a new customer takes the next number,
    so customers created at the same time get consecutive numbers instead of the same one."""

    last_number = models.PositiveIntegerField(_("last customer number"))

    class Meta:
        verbose_name = _("customer number counter")
        verbose_name_plural = _("customer number counters")

    def __str__(self) -> str:
        return str(self.last_number)


class Contact(models.Model):
    class Role(models.TextChoices):
        ADMIN = "admin", _("IT administrator")
        INVOICE = "invoice", _("Invoice recipient")
        DECISION = "decision", _("Decision maker")
        OTHER = "other", _("Other")

    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="contacts", verbose_name=_("customer")
    )
    name = models.CharField(_("name"), max_length=200)
    email = models.EmailField(_("e-mail"), blank=True)
    phone = models.CharField(_("phone"), max_length=30, blank=True)
    role = models.CharField(_("role"), max_length=20, choices=Role.choices, default=Role.ADMIN)

    class Meta:
        verbose_name = _("contact")
        verbose_name_plural = _("contacts")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class PriceList(models.Model):
    name = models.CharField(_("name"), max_length=100)
    effective_from = models.DateField(
        _("effective from"),
        unique=True,
        help_text=_("Subscriptions signed on or after this date get these prices."),
        error_messages={"unique": _("A price list already takes effect on this date.")},
    )

    class Meta:
        verbose_name = _("price list")
        verbose_name_plural = _("price lists")
        ordering = ["-effective_from"]

    def __str__(self) -> str:
        return f"{self.name} ({self.effective_from:%d.%m.%Y})"


class PriceListRow(models.Model):
    price_list = models.ForeignKey(
        PriceList, on_delete=models.CASCADE, related_name="rows", verbose_name=_("price list")
    )
    term_months = models.PositiveSmallIntegerField(_("term"), choices=Term.choices)
    monthly_price = models.DecimalField(
        _("price per user per month"), max_digits=10, decimal_places=2, validators=[MinValueValidator(Decimal("0"))]
    )
    setup_fee = models.DecimalField(
        _("setup fee"), max_digits=10, decimal_places=2, validators=[MinValueValidator(Decimal("0"))]
    )

    class Meta:
        verbose_name = _("price")
        verbose_name_plural = _("prices")
        ordering = ["price_list", "term_months"]
        constraints = [
            models.UniqueConstraint(
                fields=["price_list", "term_months"],
                name="pricelistrow_one_per_term",
                violation_error_message=_("The price list already has a price for this term."),
            )
        ]

    def __str__(self) -> str:
        return f"{self.price_list}: {self.get_term_months_display()}"


class Subscription(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        LIVE = "live", _("Live")
        NOTICE_GIVEN = "notice_given", _("Notice given")
        ENDED = "ended", _("Ended")

    customer = models.ForeignKey(
        Customer, on_delete=models.PROTECT, related_name="subscriptions", verbose_name=_("customer")
    )
    term_months = models.PositiveSmallIntegerField(_("term"), choices=Term.choices)
    signed_on = models.DateField(_("signed on"))
    go_live = models.DateField(
        _("go-live"), null=True, blank=True, help_text=_("Empty until the service is in production.")
    )
    price_list = models.ForeignKey(
        PriceList,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("price list"),
        help_text=_("The list the prices were taken from at signing."),
    )
    monthly_price = models.DecimalField(
        _("price per user per month"),
        max_digits=10,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0"))],
        help_text=_("Leave empty to use the price list in force on the signing date."),
    )
    setup_fee = models.DecimalField(
        _("setup fee"),
        max_digits=10,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0"))],
        help_text=_("Leave empty to use the price list in force on the signing date."),
    )
    status = models.CharField(_("status"), max_length=20, choices=Status.choices, default=Status.PENDING)
    notice_received = models.DateField(
        _("notice received"), null=True, blank=True, help_text=_("The date Nettsoft received the written notice.")
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    history = HistoricalRecords()

    class Meta:
        verbose_name = _("subscription")
        verbose_name_plural = _("subscriptions")
        ordering = ["-signed_on", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["customer"],
                condition=~Q(status="ended"),
                name="subscription_one_open_per_customer",
                violation_error_message=_("The customer already has a subscription that has not ended."),
            )
        ]

    def __str__(self) -> str:
        return f"{self.customer.name}: {self.get_term_months_display()}"

    @staticmethod
    def current_among(subscriptions: "Iterable[Subscription]") -> "Subscription | None":
        """A customer's current subscription among theirs, given newest first: the one that has not ended,
        else the newest ended one; None without any. The portal and the staff pages use this one rule."""
        newest_first = list(subscriptions)
        return next((s for s in newest_first if s.status != Subscription.Status.ENDED), None) or next(
            iter(newest_first), None
        )

    @property
    def binding_end(self) -> dt.date | None:
        if self.go_live is None or self.term_months is None:
            return None
        return terms.binding_end(go_live=self.go_live, term_months=self.term_months)

    @property
    def effective_end(self) -> dt.date | None:
        if self.notice_received is None or self.term_months is None:
            return None
        return terms.effective_end(notice_received=self.notice_received, term_months=self.term_months)

    def clean(self) -> None:
        errors: dict[str, Any] = {}
        if self.go_live and self.signed_on and self.go_live < self.signed_on:
            errors["go_live"] = _("Go-live cannot be before the signing date.")
        if self.notice_received and self.status in (self.Status.PENDING, self.Status.LIVE):
            self.status = self.Status.NOTICE_GIVEN
        if self.status == self.Status.LIVE and not self.go_live:
            errors["go_live"] = _("A live subscription needs a go-live date.")
        if self.status == self.Status.NOTICE_GIVEN and not self.notice_received:
            errors["notice_received"] = _("Enter the date the notice was received.")
        if self.notice_received and self.signed_on and self.notice_received < self.signed_on:
            errors["notice_received"] = _("The notice cannot be received before the signing date.")
        if self.signed_on and self.term_months is not None and (self.monthly_price is None or self.setup_fee is None):
            try:
                self.freeze_prices()
            except PriceNotFound as missing:
                errors["monthly_price"] = missing.messages[0]
        if errors:
            raise ValidationError(errors)

    def freeze_prices(self) -> None:
        """Take the prices still empty from the price list in force on the signing date."""
        row = price_for(term_months=self.term_months, on=self.signed_on)
        self.price_list = row.price_list
        if self.monthly_price is None:
            self.monthly_price = row.monthly_price
        if self.setup_fee is None:
            self.setup_fee = row.setup_fee

    def save(self, *args, **kwargs) -> None:
        if self.monthly_price is None or self.setup_fee is None:
            self.freeze_prices()
        super().save(*args, **kwargs)


class PriceNotFound(ValidationError):
    """No price list in force on a date has a price for a term."""


def price_for(*, term_months: int, on: dt.date) -> PriceListRow:
    """The price row for a term in the newest price list that took effect on or before `on`."""
    price_list = PriceList.objects.filter(effective_from__lte=on).order_by("-effective_from").first()
    if price_list is None:
        raise PriceNotFound(
            _("No price list is in force on %(date)s. Add one in Price lists, or enter the prices by hand.")
            % {"date": on.strftime("%d.%m.%Y")}
        )
    row = price_list.rows.filter(term_months=term_months).select_related("price_list").first()
    if row is None:
        raise PriceNotFound(
            _("The price list “%(list)s” has no price for the term %(term)s. Add it, or enter the prices by hand.")
            % {"list": price_list, "term": Term(term_months).label}
        )
    return row


# New customers' default profiles are found by their fixed key (AbsenceProfile.key), whatever staff
# rename them to in admin. The keys are defined here, where they are needed (sync.models.AbsenceProfile takes
# them from here); the profile model is sync's, named as "sync.AbsenceProfile" like the foreign keys below, so
# customers, the lower layer, does not import sync.
MEETING_PROFILE_KEY = "meeting"
UNAVAILABLE_PROFILE_KEY = "unavailable"


def _profile_id_by_key(key: str) -> int | None:
    profiles = apps.get_model("sync", "AbsenceProfile")._default_manager
    return profiles.filter(key=key).values_list("pk", flat=True).first()


def _default_profile_id() -> int | None:
    return _profile_id_by_key(MEETING_PROFILE_KEY)


def _default_out_of_office_profile_id() -> int | None:
    return _profile_id_by_key(UNAVAILABLE_PROFILE_KEY)


WEEKDAYS: tuple[tuple[str, "StrOrPromise"], ...] = (
    ("mon", _("Monday")),
    ("tue", _("Tuesday")),
    ("wed", _("Wednesday")),
    ("thu", _("Thursday")),
    ("fri", _("Friday")),
    ("sat", _("Saturday")),
    ("sun", _("Sunday")),
)


_OFFICE_TIME_LABELS = {
    "mon": (_("Monday from"), _("Monday to")),
    "tue": (_("Tuesday from"), _("Tuesday to")),
    "wed": (_("Wednesday from"), _("Wednesday to")),
    "thu": (_("Thursday from"), _("Thursday to")),
    "fri": (_("Friday from"), _("Friday to")),
    "sat": (_("Saturday from"), _("Saturday to")),
    "sun": (_("Sunday from"), _("Sunday to")),
}


def _office_time(day: str, which: str, default: dt.time | None) -> models.TimeField:
    start_label, end_label = _OFFICE_TIME_LABELS[day]
    return models.TimeField(start_label if which == "start" else end_label, null=True, blank=True, default=default)


_EIGHT = dt.time(8, 0)
_FOUR = dt.time(16, 0)


class CustomerSettings(models.Model):
    """How a customer's calendars become absences (calendar-rules.md §2–3)."""

    customer = models.OneToOneField(
        Customer, on_delete=models.CASCADE, related_name="settings", verbose_name=_("customer")
    )
    timezone = models.CharField(_("time zone"), max_length=64, default="Europe/Oslo", validators=[validate_timezone])
    mon_start = _office_time("mon", "start", _EIGHT)
    mon_end = _office_time("mon", "end", _FOUR)
    tue_start = _office_time("tue", "start", _EIGHT)
    tue_end = _office_time("tue", "end", _FOUR)
    wed_start = _office_time("wed", "start", _EIGHT)
    wed_end = _office_time("wed", "end", _FOUR)
    thu_start = _office_time("thu", "start", _EIGHT)
    thu_end = _office_time("thu", "end", _FOUR)
    fri_start = _office_time("fri", "start", _EIGHT)
    fri_end = _office_time("fri", "end", _FOUR)
    sat_start = _office_time("sat", "start", None)
    sat_end = _office_time("sat", "end", None)
    sun_start = _office_time("sun", "start", None)
    sun_end = _office_time("sun", "end", None)
    office_hours_only = models.BooleanField(
        _("office hours only"), default=False, help_text=_("Push appointments only within office hours.")
    )
    public_holidays = models.BooleanField(
        _("Norwegian public holidays"), default=True, help_text=_("Public holidays are days without office hours.")
    )
    default_profile = models.ForeignKey(
        "sync.AbsenceProfile",
        on_delete=models.PROTECT,
        related_name="+",
        default=_default_profile_id,
        verbose_name=_("default profile"),
    )
    out_of_office_profile = models.ForeignKey(
        "sync.AbsenceProfile",
        on_delete=models.PROTECT,
        related_name="+",
        default=_default_out_of_office_profile_id,
        verbose_name=_("out-of-office profile"),
    )
    divert_by_default = models.BooleanField(
        _("divert to voicemail by default"), default=True, help_text=_("&+ and &- in a subject override this.")
    )
    include_tentative = models.BooleanField(_("include tentative appointments"), default=False)
    history = HistoricalRecords()

    class Meta:
        verbose_name = _("calendar settings")
        verbose_name_plural = _("calendar settings")

    def __str__(self) -> str:
        return str(_("Calendar settings for %(customer)s") % {"customer": self.customer.name})

    def office_hours(self) -> dict[str, tuple[dt.time, dt.time] | None]:
        """Office hours per weekday ('mon' … 'sun') as (start, end), or None for a day off."""
        hours: dict[str, tuple[dt.time, dt.time] | None] = {}
        for day, _label in WEEKDAYS:
            start, end = getattr(self, f"{day}_start"), getattr(self, f"{day}_end")
            hours[day] = (start, end) if start is not None and end is not None else None
        return hours

    def clean(self) -> None:
        errors: dict[str, Any] = {}
        for day, label in WEEKDAYS:
            start, end = getattr(self, f"{day}_start"), getattr(self, f"{day}_end")
            if (start is None) != (end is None):
                errors[f"{day}_end" if end is None else f"{day}_start"] = _(
                    "%(day)s: give both a start and an end, or neither for a day off."
                ) % {"day": label}
            elif start is not None and end is not None and end <= start:
                errors[f"{day}_end"] = _("%(day)s: the end (%(end)s) must be after the start (%(start)s).") % {
                    "day": label,
                    "start": start.strftime("%H:%M"),
                    "end": end.strftime("%H:%M"),
                }
        if errors:
            raise ValidationError(errors)


@dataclass(frozen=True)
class UserCounts:
    """Service users by state (ServiceUserQuerySet's definitions)."""

    total: int
    active: int
    matched: int  # active with an MBN number: absences are pushed
    unmatched: int  # active without an MBN number: nothing can be pushed until the number is set
    failing: int  # active, matched, and the calendar's last sync failed
    inactive: int


class StopReason(models.TextChoices):
    """Why a user is no longer served (shown as "stopped on DATE because REASON")."""

    LEFT_GROUP = "left_group", _("left the activation group")
    DISABLED_BY_STAFF = "disabled_by_staff", _("disabled by Nettsoft")
    UNMATCHED = "unmatched", _("no longer an MBN subscriber")
    CUSTOMER_ENDED = "customer_ended", _("the subscription ended")
    CUSTOMER_PAUSED = "customer_paused", _("the service is paused")


def served_user(prefix: str = "", *, matched: bool = True) -> Q:
    """The one definition of a served user: active (in the activation group), not disabled by staff, not
    stopped, the customer served (`served_customer`), and matched to an MBN subscriber. With `matched=False`
    the last condition is left out: the sync reads an unmatched user's calendar (the portal previews it) but
    pushes nothing until the number is set."""
    served = Q(**{f"{prefix}active": True, f"{prefix}disabled_by_staff": False, f"{prefix}stop_reason": ""})
    if matched:
        served &= ~Q(**{f"{prefix}msisdn": ""})
    return served & served_customer(f"{prefix}customer__")


class ServiceUserQuerySet(models.QuerySet["ServiceUser"]):
    """The states of a service user, defined once for the portal, the staff pages and admin.

    Only active users count: an inactive one is not synced, whatever its number or its last error says.
    Unmatched is not failing: a user without an MBN number is waiting for someone to set it, which no retry
    can do; failing means the last sync of a matched user went wrong (or waits for a retry).
    """

    MATCHED = Q(active=True) & ~Q(msisdn="")
    STOPPING = ~Q(stop_reason="") & Q(stopped_at__isnull=True)
    UNMATCHED = Q(active=True, msisdn="")
    FAILING = MATCHED & Q(calendar__isnull=False) & ~Q(calendar__last_error="")

    def matched(self) -> "ServiceUserQuerySet":
        return self.filter(self.MATCHED)

    def unmatched(self) -> "ServiceUserQuerySet":
        return self.filter(self.UNMATCHED)

    def failing(self) -> "ServiceUserQuerySet":
        return self.filter(self.FAILING)

    def served(self) -> "ServiceUserQuerySet":
        """The users whose calendars are pushed to MBN (`served_user`)."""
        return self.filter(served_user())

    def stopping(self) -> "ServiceUserQuerySet":
        """Users being stopped: their absences, subscription or channel are still being removed."""
        return self.filter(self.STOPPING)

    def state_counts(self) -> UserCounts:
        """How many users are in each state: one aggregate query."""
        row = self.aggregate(  # aliases must not shadow fields
            n_total=Count("pk"),
            n_active=Count("pk", filter=Q(active=True)),
            n_matched=Count("pk", filter=self.MATCHED),
            n_unmatched=Count("pk", filter=self.UNMATCHED),
            n_failing=Count("pk", filter=self.FAILING),
            n_inactive=Count("pk", filter=Q(active=False)),
        )
        return UserCounts(**{key.removeprefix("n_"): value for key, value in row.items()})


class ServiceUser(models.Model):
    """An employee whose calendar is pushed to MBN."""

    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="service_users", verbose_name=_("customer")
    )
    email = models.EmailField(_("e-mail"))
    name = models.CharField(_("name"), max_length=200, blank=True)
    msisdn = models.CharField(
        _("MBN mobile number"),
        max_length=20,
        blank=True,
        validators=[validate_msisdn],
        help_text=_("Matched from the MBN directory, or set by hand."),
    )
    msisdn_set_by_hand = models.BooleanField(_("number set by hand"), default=False)
    active = models.BooleanField(
        _("active"), default=True, help_text=_("Member of the activation group and not disabled.")
    )
    default_profile = models.ForeignKey(
        "sync.AbsenceProfile",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("default profile"),
        help_text=_("Empty: the customer's setting."),
    )
    divert_by_default = models.BooleanField(
        _("divert to voicemail by default"), null=True, blank=True, help_text=_("Empty: the customer's setting.")
    )
    disabled_by_staff = models.BooleanField(
        _("disabled by Nettsoft"),
        default=False,
        help_text=_("Stopped whatever the activation group says, until unticked."),
    )
    stop_reason = models.CharField(_("stopped because"), max_length=20, choices=StopReason.choices, blank=True)
    stopped_at = models.DateTimeField(
        _("stopped"),
        null=True,
        blank=True,
        help_text=_("Empty while stopping: our absences on MBN and the change subscription are being removed."),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    # Who was active when: back-fills usage snapshots for days the daily job missed.
    history = HistoricalRecords()

    objects = ServiceUserQuerySet.as_manager()

    class Meta:
        verbose_name = _("service user")
        verbose_name_plural = _("service users")
        ordering = ["customer", "email"]
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "email"],
                name="serviceuser_unique_email_per_customer",
                violation_error_message=_("The customer already has a service user with this e-mail."),
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>" if self.name else self.email

    @property
    def is_matched(self) -> bool:
        return bool(self.msisdn)

    def wanted_stop_reason(self, *, customer_served: bool | None = None) -> str:
        """Why this user should not be served now ("" when they should), from the user and the customer
        (`served_customer`; `customer_served` when the caller has asked already). Losing the MBN number is
        decided by the group refresh, which sees it happen."""
        customer = self.customer
        if customer.service_paused:
            return StopReason.CUSTOMER_PAUSED
        if customer_served is None:
            customer_served = Customer.objects.served().filter(pk=customer.pk).exists()
        if not customer_served:
            return StopReason.CUSTOMER_ENDED
        if self.disabled_by_staff:
            return StopReason.DISABLED_BY_STAFF
        if not self.active:
            return StopReason.LEFT_GROUP
        return ""

    @property
    def service_state(self) -> "StrOrPromise":
        """ "Stopping" or "Stopped on DATE because REASON"; "" for a user that is not stopped."""
        if not self.stop_reason:
            return ""
        if self.stopped_at is None:
            return _("Stopping: removing our absences from MBN")
        return _("Stopped on %(date)s because %(reason)s") % {
            "date": timezone.localtime(self.stopped_at).strftime("%d.%m.%Y"),
            "reason": self.get_stop_reason_display(),
        }

    def clean(self) -> None:
        self.email = (self.email or "").strip().lower()
        if self.msisdn:
            self.msisdn = normalize_msisdn(self.msisdn)
