"""Billing records: daily usage snapshots, billing runs, invoices, credit notes, their counters and events."""

import datetime as dt
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext, gettext_noop
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords

from customers.models import Customer, Subscription


class UsageSnapshot(models.Model):
    """Active users of a customer at the end of a day: the billing source (billing.md)."""

    class Source(models.TextChoices):
        DAILY = "daily", _("Daily job")
        BACKFILL = "backfill", _("Back-filled from history")

    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="usage_snapshots", verbose_name=_("customer")
    )
    day = models.DateField(_("day"))
    active_users = models.PositiveIntegerField(_("active users"))
    source = models.CharField(_("source"), max_length=10, choices=Source.choices, default=Source.DAILY)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("usage snapshot")
        verbose_name_plural = _("usage snapshots")
        ordering = ["-day", "customer"]
        constraints = [models.UniqueConstraint(fields=["customer", "day"], name="usagesnapshot_one_per_day")]

    def __str__(self) -> str:
        return f"{self.customer.name} {self.day}: {self.active_users}"


class DocumentCounter(models.Model):
    """The last number used in a gapless series; locked with SELECT … FOR UPDATE while issuing."""

    class Series(models.TextChoices):
        INVOICE = "invoice", _("Invoices")
        CREDIT_NOTE = "credit_note", _("Credit notes")

    series = models.CharField(_("series"), max_length=20, choices=Series.choices, unique=True)
    last_number = models.PositiveIntegerField(_("last number"), default=0)

    class Meta:
        verbose_name = _("number series")
        verbose_name_plural = _("number series")

    def __str__(self) -> str:
        return f"{self.get_series_display()}: {self.last_number}"


class BillingRun(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running", _("Running")
        FINISHED = "finished", _("Finished")
        FINISHED_WITH_ERRORS = "errors", _("Finished with errors")
        FAILED = "failed", _("Failed")

    quarter = models.CharField(_("quarter"), max_length=7, help_text=_("e.g. 2026-Q3"))
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(_("started"), auto_now_add=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("started by"),
    )
    subscriptions_total = models.PositiveIntegerField(_("subscriptions"), default=0)
    subscriptions_done = models.PositiveIntegerField(_("processed"), default=0)
    invoices_created = models.PositiveIntegerField(_("invoices created"), default=0)
    errors = models.JSONField(_("errors"), default=list, blank=True, help_text=_("Per customer: what went wrong."))
    heartbeat_at = models.DateTimeField(
        _("last progress"),
        null=True,
        blank=True,
        help_text=_("Updated while the run works; a running run silent for long has lost its worker."),
    )

    class Meta:
        verbose_name = _("billing run")
        verbose_name_plural = _("billing runs")
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.quarter} ({self.started_at:%d.%m.%Y %H:%M})"


class Invoice(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft")
        ISSUED = "issued", _("Issued")
        PAID = "paid", _("Paid")
        CREDITED = "credited", _("Credited")

    customer = models.ForeignKey(
        Customer, on_delete=models.PROTECT, related_name="invoices", verbose_name=_("customer")
    )
    subscription = models.ForeignKey(
        Subscription, on_delete=models.PROTECT, related_name="invoices", verbose_name=_("subscription")
    )
    billing_run = models.ForeignKey(
        BillingRun,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="invoices",
        verbose_name=_("billing run"),
    )
    quarter = models.CharField(_("quarter"), max_length=7)
    period_start = models.DateField(_("period start"))
    period_end = models.DateField(_("period end"))
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.DRAFT)
    number = models.PositiveIntegerField(_("invoice number"), null=True, blank=True, unique=True)
    issue_date = models.DateField(_("invoice date"), null=True, blank=True)
    due_date = models.DateField(_("due date"), null=True, blank=True)
    kid = models.CharField(_("KID"), max_length=25, blank=True)
    net = models.DecimalField(_("net"), max_digits=12, decimal_places=2, default=Decimal("0.00"))
    vat = models.DecimalField(_("VAT"), max_digits=12, decimal_places=2, default=Decimal("0.00"))
    total = models.DecimalField(_("total"), max_digits=12, decimal_places=2, default=Decimal("0.00"))
    # The buyer as on the day of issue (the customer may move later; the document may not change).
    buyer_name = models.CharField(_("buyer"), max_length=200, blank=True)
    buyer_org_number = models.CharField(_("buyer org. no."), max_length=20, blank=True)
    buyer_address_line = models.CharField(_("buyer address"), max_length=200, blank=True)
    buyer_address_line_2 = models.CharField(_("buyer address line 2"), max_length=200, blank=True)
    buyer_postal_code = models.CharField(_("buyer postal code"), max_length=10, blank=True)
    buyer_city = models.CharField(_("buyer city"), max_length=100, blank=True)
    buyer_country_code = models.CharField(_("buyer country"), max_length=2, blank=True)
    buyer_email = models.EmailField(_("buyer invoice e-mail"), blank=True)
    buyer_reference = models.CharField(_("buyer reference"), max_length=100, blank=True)
    buyer_peppol = models.CharField(_("buyer Peppol participant"), max_length=60, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    issued_at = models.DateTimeField(_("issued"), null=True, blank=True)
    issued_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("issued by"),
    )
    paid_on = models.DateField(_("paid on"), null=True, blank=True)
    # Who issued, marked paid or credited it, and when; InvoiceEvent tells the same story in words.
    history = HistoricalRecords()

    class Meta:
        verbose_name = _("invoice")
        verbose_name_plural = _("invoices")
        ordering = ["-period_start", "customer__name"]
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "period_start"],
                condition=~Q(status="credited"),
                name="invoice_one_per_subscription_period",
                violation_error_message=_("This period is already invoiced for the subscription."),
            ),
        ]

    def __str__(self) -> str:
        if self.number:
            return str(_("Invoice %(number)s") % {"number": self.number})
        return str(_("Draft %(quarter)s for %(customer)s") % {"quarter": self.quarter, "customer": self.customer.name})

    @property
    def is_issued(self) -> bool:
        return self.number is not None


class DocumentLineFields(models.Model):
    """What every invoice and credit-note line holds."""

    class Kind(models.TextChoices):
        SETUP = "setup", _("Setup")
        SUBSCRIPTION = "subscription", _("Subscription")
        MINIMUM = "minimum", _("Minimum charge")
        TERMINATION_FEE = "termination_fee", _("Early-termination fee")

    position = models.PositiveSmallIntegerField(_("position"))
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    month = models.DateField(_("month"), null=True, blank=True)
    description = models.CharField(_("description"), max_length=200)
    quantity = models.DecimalField(_("quantity"), max_digits=12, decimal_places=2)
    unit_price = models.DecimalField(_("unit price"), max_digits=12, decimal_places=2)
    amount = models.DecimalField(_("amount"), max_digits=12, decimal_places=2)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return self.description


class InvoiceLine(DocumentLineFields):
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines", verbose_name=_("invoice"))

    class Meta:
        verbose_name = _("invoice line")
        verbose_name_plural = _("invoice lines")
        ordering = ["invoice", "position"]


class CreditNote(models.Model):
    invoice = models.ForeignKey(
        Invoice, on_delete=models.PROTECT, related_name="credit_notes", verbose_name=_("invoice")
    )
    number = models.PositiveIntegerField(_("credit note number"), unique=True)
    issue_date = models.DateField(_("date"))
    reason = models.CharField(_("reason"), max_length=300)
    net = models.DecimalField(_("net"), max_digits=12, decimal_places=2)
    vat = models.DecimalField(_("VAT"), max_digits=12, decimal_places=2)
    total = models.DecimalField(_("total"), max_digits=12, decimal_places=2)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("created by"),
    )

    class Meta:
        verbose_name = _("credit note")
        verbose_name_plural = _("credit notes")
        ordering = ["-number"]

    def __str__(self) -> str:
        return str(_("Credit note %(number)s") % {"number": self.number})


class CreditNoteLine(DocumentLineFields):
    credit_note = models.ForeignKey(
        CreditNote, on_delete=models.CASCADE, related_name="lines", verbose_name=_("credit note")
    )

    class Meta:
        verbose_name = _("credit note line")
        verbose_name_plural = _("credit note lines")
        ordering = ["credit_note", "position"]


class InvoiceEvent(models.Model):
    """Append-only history of what happened to an invoice or credit note."""

    class Kind(models.TextChoices):
        CREATED = "created", _("Created")
        ISSUED = "issued", _("Issued")
        EMAILED = "emailed", _("E-mailed")
        EMAIL_FAILED = "email_failed", _("E-mail failed")
        PAID = "paid", _("Paid")
        CREDITED = "credited", _("Credited")

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="events", verbose_name=_("invoice"))
    credit_note = models.ForeignKey(
        CreditNote,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="events",
        verbose_name=_("credit note"),
    )
    kind = models.CharField(_("event"), max_length=20, choices=Kind.choices)
    at = models.DateTimeField(_("time"), auto_now_add=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("user"),
    )
    # What happened is `kind` plus `params`, worded when shown (`description`); `message` is the text events
    # had before they had parameters, kept for them.
    params = models.JSONField(_("parameters"), default=dict, blank=True)
    message = models.CharField(_("message"), max_length=500, blank=True)

    WORDS = {
        Kind.CREATED: gettext_noop("Billing run %(quarter)s"),
        Kind.ISSUED: gettext_noop("Invoice %(number)s, KID %(kid)s"),
        Kind.EMAILED: gettext_noop("Sent to %(to)s"),
        Kind.EMAIL_FAILED: gettext_noop("Could not be sent: %(error)s"),
        Kind.PAID: gettext_noop("Paid %(paid_on)s"),
        Kind.CREDITED: gettext_noop("Credit note %(number)s: %(reason)s"),
    }

    class Meta:
        verbose_name = _("invoice event")
        verbose_name_plural = _("invoice events")
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.at:%d.%m.%Y %H:%M}"

    @property
    def description(self) -> str:
        """What happened, in the reader's language; an event from before parameters shows its stored text."""
        if not self.params:
            return self.message
        shown = dict(self.params)
        if "paid_on" in shown:
            shown["paid_on"] = f"{dt.date.fromisoformat(shown['paid_on']):%d.%m.%Y}"
        return gettext(self.WORDS[self.Kind(self.kind)]) % shown
