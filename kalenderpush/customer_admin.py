"""The staff's customer page in admin: the customer with its settings, subscriptions, contacts and users, and
its sync health. It sits in the top layer because the sync-health chart reads sync runs and billing's usage;
the inlines and filters it shows are the customers app's own (customers.admin)."""

from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.http import HttpRequest
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from common.admin import AuditedAdmin
from customers import services
from customers.admin import (
    ContactInline,
    CustomerSettingsInline,
    ServiceUserInline,
    SubscriptionInline,
    SubscriptionStatusFilter,
)
from customers.models import Customer, Subscription, Term
from kalenderpush.health import render as render_sync_health


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
    readonly_fields = ["number", "created_at", "sync_health", "service_paused", "ended_at", "purged_at"]
    actions = ["pause_service", "resume_service"]
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
        (_("Calendar sync"), {"fields": ["sync_health", ("service_paused", "ended_at", "purged_at")]}),
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
        return render_sync_health(obj) if obj.pk else "–"

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
        if any(formset.has_changed() for formset in formsets):  # a user disabled or enabled, a subscription
            services.update_service_states(customer=form.instance)

    def _set_paused(self, request: HttpRequest, queryset: QuerySet[Customer], *, paused: bool) -> None:
        changed = 0
        for customer in queryset:
            if customer.service_paused != paused:
                services.set_service_paused(customer=customer, paused=paused, by=request.user)
                message = gettext("Service paused.") if paused else gettext("Service resumed.")
                self.log_change(request, customer, message)
                changed += 1
        text = (
            ngettext("%(count)d customer paused.", "%(count)d customers paused.", changed)
            if paused
            else ngettext("%(count)d customer resumed.", "%(count)d customers resumed.", changed)
        )
        self.message_user(request, text % {"count": changed}, messages.SUCCESS)

    @admin.action(description=_("Pause the service (stop every user)"), permissions=["change"])
    def pause_service(self, request: HttpRequest, queryset: QuerySet[Customer]) -> None:
        self._set_paused(request, queryset, paused=True)

    @admin.action(description=_("Resume the service (sync every user in full)"), permissions=["change"])
    def resume_service(self, request: HttpRequest, queryset: QuerySet[Customer]) -> None:
        self._set_paused(request, queryset, paused=False)
