"""Admin for Nettsoft staff: the customer page's inlines and filter (the page itself is kalenderpush.customer_admin,
subscriptions are billing.admin's), calendar settings' history, service users and price lists."""

from typing import Any

from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from common.admin import AuditedAdmin, CachedProfileChoicesMixin, DatesInRangeMixin
from common.formatting import format_date, format_nok
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


class TermEndsMixin:
    """A subscription's derived binding and effective end, as columns (the inline here, billing's subscription
    admin)."""

    @admin.display(description=_("binding end"))
    def binding_end_display(self, obj: Subscription) -> str:
        return format_date(obj.binding_end)

    @admin.display(description=_("effective end"))
    def effective_end_display(self, obj: Subscription) -> str:
        return format_date(obj.effective_end)


class SubscriptionInline(TermEndsMixin, DatesInRangeMixin, admin.TabularInline):
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


class ContactInline(admin.TabularInline):
    model = Contact
    extra = 0
    fields = ["name", "role", "email", "phone"]


class ServiceUserInline(CachedProfileChoicesMixin, admin.TabularInline):
    model = ServiceUser
    extra = 0
    show_change_link = True
    fields = [
        "email",
        "name",
        "msisdn",
        "msisdn_set_by_hand",
        "active",
        "disabled_by_staff",
        "service_state",
        "default_profile",
        "divert_by_default",
    ]
    readonly_fields = ["service_state"]

    @admin.display(description=_("service"))
    def service_state(self, obj: ServiceUser) -> str:
        return str(obj.service_state) or "–"


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
    list_display = [
        "email",
        "name",
        "customer",
        "msisdn",
        "matched",
        "active",
        "service_state",
        "default_profile",
        "divert_by_default",
    ]
    list_filter = ["active", MatchedFilter, "msisdn_set_by_hand", "disabled_by_staff", "stop_reason"]
    list_select_related = ["customer", "default_profile"]
    search_fields = ["email", "name", "msisdn", "customer__name"]
    autocomplete_fields = ["customer"]
    readonly_fields = ["created_at", "stop_reason", "stopped_at"]
    show_full_result_count = False
    list_per_page = 100

    @admin.display(description=_("matched"), boolean=True)
    def matched(self, obj: ServiceUser) -> bool:
        return obj.is_matched

    @admin.display(description=_("service"), ordering="stopped_at")
    def service_state(self, obj: ServiceUser) -> str:
        return str(obj.service_state) or "–"

    def save_model(self, request: HttpRequest, obj: ServiceUser, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if form.has_changed():  # disabled or enabled by staff: stopped or started again
            services.update_service_states(customer=obj.customer)


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
