"""Admin for Nettsoft staff: customers with their subscription, settings and users, price lists."""

import datetime as dt
from collections.abc import Mapping
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.forms.models import BaseInlineFormSet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.defaultfilters import yesno
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import formats, timezone
from django.utils.html import format_html
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _
from simple_history.admin import SimpleHistoryAdmin
from simple_history.template_utils import HistoricalRecordContextHelper

from billing.core.money import round_half_up
from customers import services
from customers.models import (
    NO_SUBSCRIPTION,
    WEEKDAYS,
    Contact,
    Customer,
    CustomerSettings,
    PriceList,
    PriceListRow,
    ServiceUser,
    Subscription,
    Term,
)
from kalenderpush.formatting import format_nok, format_number
from kalenderpush.typed_dates import DateInRangeField


class CachedProfileChoicesMixin:
    """Reads the absence profiles once per request instead of once per inline row.

    Only the profile rows are shared, keyed by their query; the empty choice belongs to each field. A
    required field (the company's default) has none, an optional one (a user's override) has
    "---------" first: sharing one whole list gave the overrides no empty choice, so saving the page
    unchanged set every user without an override to the first profile.
    """

    cached_choice_fields: tuple[str, ...] = ("default_profile", "out_of_office_profile")

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)  # type: ignore[misc]
        if field is not None and db_field.name in self.cached_choice_fields:
            cache: dict[str, list[Any]] = request.__dict__.setdefault("_kp_choice_cache", {})
            key = str(field.queryset.query)
            if key not in cache:
                iterator = field.iterator(field)
                cache[key] = [iterator.choice(obj) for obj in field.queryset]
            empty = [("", field.empty_label)] if field.empty_label is not None else []
            field.choices = empty + cache[key]
        return field


class DatesInRangeMixin:
    """Every date field staff type is bounded to the years people mean (kalenderpush.typed_dates)."""

    formfield_overrides: "Mapping[type[models.Field[Any, Any]], Mapping[str, Any]]" = {
        models.DateField: {"form_class": DateInRangeField}
    }


# --- Audit history ---------------------------------------------------------------------------------


def _readable(field: models.Field, value: Any) -> Any:
    """A stored value as staff read it: a choice's label, yes/no, dates and amounts in their language."""
    if value is None or value == "":
        return "–"
    if field.choices:
        return dict(field.flatchoices).get(value, value)
    if isinstance(field, models.BooleanField):
        return yesno(value)
    if isinstance(value, dt.datetime) and timezone.is_aware(value):
        value = timezone.localtime(value)
    return formats.localize(value)


class ReadableChanges(HistoricalRecordContextHelper):
    """The "Changes" column of the history page, in readable values."""

    def prepare_delta_change_value(self, change: Any, value: Any) -> Any:
        field = self.model._meta.get_field(change.field)
        if field.many_to_many:
            return super().prepare_delta_change_value(change, value)
        return _readable(field, value)


class AuditedAdmin(DatesInRangeMixin, SimpleHistoryAdmin):
    """The admin's "History" page: every change field by field, and who made it (django-simple-history).

    Whoever may view the record may view its history; only who may change it may revert to an old
    version, and not where `revert_disabled` says so.
    """

    def get_historical_record_context_helper(self, request: HttpRequest, historical_record: Any) -> Any:
        return ReadableChanges(self.model, historical_record)

    def render_history_view(self, request: HttpRequest, template: str, context: dict[str, Any], **kwargs: Any) -> Any:
        # The columns of history_list_display show the stored value as is ("notice_given", True); the
        # page is rendered from the records, after the changes have been worked out, so format them here.
        fields = {field.name: field for field in self.model._meta.get_fields() if field.concrete}
        columns = [name for name in context.get("history_list_display", []) if name in fields]
        if columns:
            for record in context["page_obj"]:
                for name in columns:
                    setattr(record, name, _readable(fields[name], getattr(record, name)))
        return super().render_history_view(request, template, context, **kwargs)

    def history_form_view(
        self, request: HttpRequest, object_id: str, version_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # simple_history saves a POSTed old version for anyone who may *view* the history; only allow
        # what the page offers: a revert by someone with change permission, where reverting is enabled.
        if request.method == "POST":
            obj = self.get_object(request, unquote(object_id))  # None once deleted: restoring is a revert too
            if self.revert_disabled(request, obj) or not self.has_change_history_permission(request, obj):
                raise PermissionDenied
        return super().history_form_view(request, object_id, version_id, extra_context)


# --- Inlines on the customer page ------------------------------------------------------------------


CUSTOMER_SETTINGS_FIELDSETS: list[Any] = [
    (
        None,
        {
            "fields": [
                "timezone",
                ("default_profile", "out_of_office_profile"),
                ("divert_by_default", "include_tentative"),
                ("office_hours_only", "public_holidays"),
            ]
        },
    ),
    (_("Office hours"), {"fields": [(f"{day}_start", f"{day}_end") for day, _label in WEEKDAYS]}),
]


class CustomerSettingsInline(CachedProfileChoicesMixin, admin.StackedInline):
    model = CustomerSettings
    can_delete = False
    min_num = 1
    max_num = 1
    fieldsets = [*CUSTOMER_SETTINGS_FIELDSETS, (None, {"fields": ["history_link"]})]
    readonly_fields = ["history_link"]

    @admin.display(description=_("change history"))
    def history_link(self, obj: CustomerSettings) -> str:
        if obj.pk is None:
            return "–"
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:customers_customersettings_history", args=[obj.pk]),
            gettext("Changes to the calendar settings, and who made them"),
        )


class SubscriptionInline(DatesInRangeMixin, admin.TabularInline):
    model = Subscription
    extra = 0
    show_change_link = True
    fields = [
        "term_months",
        "signed_on",
        "go_live",
        "status",
        "monthly_price",
        "setup_fee",
        "notice_received",
        "binding_end_display",
        "effective_end_display",
    ]
    readonly_fields = ["binding_end_display", "effective_end_display"]

    @admin.display(description=_("binding end"))
    def binding_end_display(self, obj: Subscription) -> str:
        return _format_date(obj.binding_end)

    @admin.display(description=_("effective end"))
    def effective_end_display(self, obj: Subscription) -> str:
        return _format_date(obj.effective_end)


class ContactInline(admin.TabularInline):
    model = Contact
    extra = 0
    fields = ["name", "role", "email", "phone"]


class ServiceUserInline(CachedProfileChoicesMixin, admin.TabularInline):
    model = ServiceUser
    extra = 0
    show_change_link = True
    fields = ["email", "name", "msisdn", "msisdn_set_by_hand", "active", "default_profile", "divert_by_default"]


def _format_date(value: dt.date | None) -> str:
    return value.strftime("%d.%m.%Y") if value else "–"


# --- Customer -------------------------------------------------------------------------------------


class SubscriptionStatusFilter(admin.SimpleListFilter):
    title = _("subscription status")
    parameter_name = "subscription_status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [*Subscription.Status.choices, (NO_SUBSCRIPTION, gettext("No subscription"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Customer]) -> QuerySet[Customer]:
        """The customers in the chosen status, as the dashboard counts them (`CustomerQuerySet`)."""
        value = self.value()
        if value:
            return queryset.filter(pk__in=Customer.objects.in_subscription_status(value).values("pk"))
        return queryset


@admin.register(Customer)
class CustomerAdmin(AuditedAdmin):
    list_display = [
        "number",
        "name",
        "org_number_short",
        "subscription_status",
        "subscription_term",
        "active_users",
        "unmatched_users",
        "invoice_email",
        "send_ehf",
    ]
    list_display_links = ["number", "name"]
    list_filter = [SubscriptionStatusFilter, "subscriptions__term_months", "send_ehf", "created_at"]
    search_fields = ["name", "org_number", "=customer_number", "invoice_email", "contacts__name", "contacts__email"]
    readonly_fields = ["number", "created_at", "sync_health"]
    fieldsets = [
        (None, {"fields": ["number", "name", "org_number"]}),
        (
            _("Invoicing"),
            {
                "fields": [
                    "address_line",
                    "address_line_2",
                    ("postal_code", "city"),
                    "country_code",
                    "invoice_email",
                    "buyer_reference",
                    ("peppol_participant", "send_ehf"),
                ]
            },
        ),
        (_("Calendar sync"), {"fields": ["sync_health"]}),
        (_("Record"), {"fields": ["created_at"], "classes": ["collapse"]}),
    ]
    inlines = [CustomerSettingsInline, SubscriptionInline, ContactInline, ServiceUserInline]
    show_full_result_count = False
    history_list_display = ["name"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Customer]:
        open_subscription = Subscription.objects.filter(customer=OuterRef("pk")).exclude(
            status=Subscription.Status.ENDED
        )
        return (
            super()
            .get_queryset(request)
            .annotate(
                current_status=Subquery(open_subscription.values("status")[:1]),
                current_term=Subquery(open_subscription.values("term_months")[:1]),
                active_user_count=Count("service_users", filter=Q(service_users__active=True), distinct=True),
                unmatched_user_count=Count(
                    "service_users", filter=Q(service_users__active=True, service_users__msisdn=""), distinct=True
                ),
            )
        )

    @admin.display(description=_("sync health"))
    def sync_health(self, obj: Customer) -> str:
        from sync.health import render

        return render(obj) if obj.pk else "–"

    @admin.display(description=_("customer number"), ordering="customer_number")
    def number(self, obj: Customer) -> str:
        return str(obj.customer_number)  # an identifier: no thousands separator

    @admin.display(description=_("org. no."), ordering="org_number")
    def org_number_short(self, obj: Customer) -> str:
        return obj.org_number

    @admin.display(description=_("subscription"), ordering="current_status")
    def subscription_status(self, obj: Any) -> str:  # obj: a Customer annotated by get_queryset
        return str(Subscription.Status(obj.current_status).label) if obj.current_status else "–"

    @admin.display(description=_("term"), ordering="current_term")
    def subscription_term(self, obj: Any) -> str:
        return str(Term(obj.current_term).label) if obj.current_term is not None else "–"

    @admin.display(description=_("active users"), ordering="active_user_count")
    def active_users(self, obj: Any) -> int:
        return obj.active_user_count

    @admin.display(description=_("unmatched users"), ordering="unmatched_user_count")
    def unmatched_users(self, obj: Any) -> int:
        return obj.unmatched_user_count

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        services.ensure_customer_settings(customer=form.instance)


@admin.register(CustomerSettings)
class CustomerSettingsAdmin(AuditedAdmin):
    """Read-only: calendar settings are edited on the customer's page; here is their history."""

    list_display = ["customer", "timezone", "office_hours_only", "public_holidays", "divert_by_default"]
    list_select_related = ["customer"]
    list_filter = ["office_hours_only", "public_holidays", "divert_by_default", "include_tentative"]
    search_fields = ["customer__name", "=customer__customer_number"]
    fieldsets = [(None, {"fields": ["customer"]}), *CUSTOMER_SETTINGS_FIELDSETS]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- Subscription ---------------------------------------------------------------------------------


class NoticeForm(forms.Form):
    notice_received = DateInRangeField(
        label=_("Notice received"),
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text=_("The date Nettsoft received the customer's written notice."),
    )


class MarkLiveForm(forms.Form):
    go_live = DateInRangeField(
        label=_("Go-live"),
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text=_("The first day in production. Billing and the term start on this day."),
    )


@admin.register(Subscription)
class SubscriptionAdmin(AuditedAdmin):
    list_display = [
        "customer",
        "term_months",
        "status",
        "go_live_display",
        "binding_end_display",
        "notice_received_display",
        "effective_end_display",
        "monthly_price_display",
        "setup_fee_display",
    ]
    list_filter = ["status", "term_months", "go_live", "signed_on"]
    list_select_related = ["customer"]
    search_fields = ["customer__name", "customer__org_number", "=customer__customer_number"]
    autocomplete_fields = ["customer"]
    date_hierarchy = "signed_on"
    readonly_fields = ["price_list", "binding_end_display", "effective_end_display", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["customer", "term_months", "signed_on", "status"]}),
        (_("Prices"), {"fields": ["monthly_price", "setup_fee", "price_list"]}),
        (_("Term"), {"fields": ["go_live", "binding_end_display", "notice_received", "effective_end_display"]}),
        (_("Record"), {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
    ]
    actions = ["mark_live", "register_notice"]
    history_list_display = ["status"]

    # The list's dates as 31.01.2026 like the derived ones beside them, short enough for 1280 px (the
    # signing date is left to the date drill-down and the filter).
    @admin.display(description=Subscription._meta.get_field("go_live").verbose_name, ordering="go_live")
    def go_live_display(self, obj: Subscription) -> str:
        return _format_date(obj.go_live)

    @admin.display(description=Subscription._meta.get_field("notice_received").verbose_name, ordering="notice_received")
    def notice_received_display(self, obj: Subscription) -> str:
        return _format_date(obj.notice_received)

    @admin.display(description=_("binding end"))
    def binding_end_display(self, obj: Subscription) -> str:
        return _format_date(obj.binding_end)

    @admin.display(description=_("effective end"))
    def effective_end_display(self, obj: Subscription) -> str:
        return _format_date(obj.effective_end)

    @admin.display(description=_("price per user per month"), ordering="monthly_price")
    def monthly_price_display(self, obj: Subscription) -> str:
        return format_nok(obj.monthly_price)

    @admin.display(description=_("setup"), ordering="setup_fee")  # a short heading: the list fits 1280 px
    def setup_fee_display(self, obj: Subscription) -> str:
        return format_nok(obj.setup_fee)

    @admin.action(description=_("Mark as live…"), permissions=["change"])
    def mark_live(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> HttpResponse | None:
        pending = [s for s in queryset if s.status == Subscription.Status.PENDING]
        skipped = len(queryset) - len(pending)
        if "apply" in request.POST:
            form = MarkLiveForm(request.POST)
            if form.is_valid():
                go_live = form.cleaned_data["go_live"]
                done = 0
                for subscription in pending:
                    try:
                        services.mark_live(subscription=subscription, go_live=go_live, by=request.user)
                        done += 1
                    except ValidationError as error:
                        self.message_user(request, "; ".join(error.messages), messages.ERROR)
                if done:
                    self.message_user(
                        request,
                        ngettext(
                            "%(count)d subscription is live from %(date)s.",
                            "%(count)d subscriptions are live from %(date)s.",
                            done,
                        )
                        % {"count": done, "date": go_live.strftime("%d.%m.%Y")},
                        messages.SUCCESS,
                    )
                return None
        else:
            form = MarkLiveForm(initial={"go_live": timezone.localdate()})
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Mark as live"),
            "opts": self.model._meta,
            "form": form,
            "pending": pending,
            "skipped": skipped,
            "queryset": queryset,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/customers/subscription/mark_live.html", context)

    @admin.action(description=_("Register notice…"), permissions=["change"])
    def register_notice(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> HttpResponse | None:
        """Shows effective end, binding end, average users and fee; stores the notice only on confirmation."""
        from billing import services as billing_services

        if queryset.count() != 1:
            self.message_user(request, gettext("Register a notice for one subscription at a time."), messages.ERROR)
            return None
        subscription = queryset.select_related("customer").get()
        form = NoticeForm(
            request.POST if "notice_received" in request.POST else None,
            initial={"notice_received": timezone.localdate()},
        )
        preview = None
        if form.is_valid():
            notice = form.cleaned_data["notice_received"]
            try:
                if "confirm" in request.POST:
                    billing_services.register_notice(
                        subscription_id=subscription.pk, notice_received=notice, by=request.user
                    )
                    letter = reverse("admin:customers_subscription_letter", args=[subscription.pk])
                    self.message_user(
                        request,
                        format_html(
                            gettext(
                                'Notice registered. <a href="{}">Download the confirmation letter (PDF)</a> and '
                                "send it to the customer."
                            ),
                            letter,
                        ),
                        messages.SUCCESS,
                    )
                    return None
                if subscription.go_live is not None:
                    preview = billing_services.termination_for(subscription, notice_received=notice)
            except ValidationError as error:
                form.add_error("notice_received", error)
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Register notice"),
            "opts": self.model._meta,
            "form": form,
            "subscription": subscription,
            "preview": preview,
            "preview_average": preview and format_number(round_half_up(preview.average_users, 4), 4),
            "preview_remaining": preview and format_number(round_half_up(preview.remaining_months, 4), 4),
            "preview_fee": preview and format_nok(preview.fee),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/customers/subscription/register_notice.html", context)

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<int:pk>/termination-letter.pdf",
                self.admin_site.admin_view(self.letter_view),
                name="customers_subscription_letter",
            ),
            *super().get_urls(),
        ]

    def letter_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        from billing.pdf import render_termination_letter_pdf
        from billing.services import termination_letter

        if not self.has_view_permission(request):
            raise PermissionDenied
        subscription = get_object_or_404(Subscription.objects.select_related("customer"), pk=pk)
        try:
            letter = termination_letter(subscription=subscription)
        except ValidationError as error:
            raise Http404("; ".join(error.messages)) from error
        response = HttpResponse(render_termination_letter_pdf(letter), content_type="application/pdf")
        response["Content-Disposition"] = (
            f'attachment; filename="oppsigelse-{subscription.customer.customer_number}.pdf"'
        )
        return response


# --- Service users --------------------------------------------------------------------------------


class MatchedFilter(admin.SimpleListFilter):
    title = _("MBN match")
    parameter_name = "matched"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("yes", gettext("Matched")), ("no", gettext("Unmatched"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ServiceUser]) -> QuerySet[ServiceUser]:
        if self.value() == "yes":
            return queryset.exclude(msisdn="")
        if self.value() == "no":
            return queryset.filter(msisdn="")
        return queryset


@admin.register(ServiceUser)
class ServiceUserAdmin(CachedProfileChoicesMixin, admin.ModelAdmin):
    list_display = ["email", "name", "customer", "msisdn", "matched", "active", "default_profile", "divert_by_default"]
    list_filter = ["active", MatchedFilter, "msisdn_set_by_hand"]
    list_select_related = ["customer", "default_profile"]
    search_fields = ["email", "name", "msisdn", "customer__name"]
    autocomplete_fields = ["customer"]
    readonly_fields = ["created_at"]
    show_full_result_count = False
    list_per_page = 100

    @admin.display(description=_("matched"), boolean=True)
    def matched(self, obj: ServiceUser) -> bool:
        return obj.is_matched


# --- Price lists ----------------------------------------------------------------------------------


class PriceListRowFormSet(BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        terms = [
            form.cleaned_data.get("term_months")
            for form in self.forms
            if form.cleaned_data and not form.cleaned_data.get("DELETE")
        ]
        missing = [str(Term(term).label) for term in Term.values if term not in terms]
        if missing:
            raise ValidationError(
                gettext("A price list needs a price for every term; missing: %(terms)s.")
                % {"terms": ", ".join(missing)}
            )


class PriceListRowInline(admin.TabularInline):
    model = PriceListRow
    formset = PriceListRowFormSet
    extra = 0
    min_num = 4
    max_num = 4


@admin.register(PriceList)
class PriceListAdmin(DatesInRangeMixin, admin.ModelAdmin):
    list_display = ["name", "effective_from", "prices"]
    search_fields = ["name"]
    date_hierarchy = "effective_from"
    inlines = [PriceListRowInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[PriceList]:
        return super().get_queryset(request).prefetch_related("rows")

    @admin.display(description=_("prices (per user per month / setup)"))
    def prices(self, obj: PriceList) -> str:
        return " · ".join(
            f"{row.get_term_months_display()}: {format_nok(row.monthly_price)} / {format_nok(row.setup_fee)}"
            for row in obj.rows.all()
        )
