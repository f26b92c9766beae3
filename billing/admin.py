"""Admin for billing: runs, drafts to review and issue, issued documents (read-only) and downloads, and
subscriptions (go-live, notice with its fee and the termination letter: billing's services).

Staff issue drafts in bulk; accountants (group "Accountants") only view invoices and credit notes and
download them (PDF, EHF, the quarter's ZIP).
"""

import datetime as dt
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from billing import services
from billing.core.money import round_half_up
from billing.exports import ExportedDocument, quarter_zip
from billing.models import (
    BillingRun,
    CreditNote,
    CreditNoteLine,
    DocumentCounter,
    Invoice,
    InvoiceEvent,
    InvoiceLine,
    UsageSnapshot,
)
from billing.pdf import render_termination_letter_pdf
from billing.quarters import Quarter
from common.admin import AuditedAdmin
from common.downloads import download
from common.formatting import format_date, format_nok, format_number
from common.queue import enqueue
from common.typed_dates import DateInRangeField
from customers import services as customer_services
from customers.admin import TermEndsMixin
from customers.models import Subscription


class ReadOnlyMixin:
    """Records nobody edits by hand: history, issued documents."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(UsageSnapshot)
class UsageSnapshotAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["day", "customer", "active_users", "source"]
    list_filter = ["source", "day"]
    list_select_related = ["customer"]
    search_fields = ["customer__name", "=customer__customer_number"]
    date_hierarchy = "day"
    show_full_result_count = False


class RunBillingForm(forms.Form):
    quarter = forms.ChoiceField(label=_("Quarter"))

    def __init__(self, *args: Any, today: dt.date, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        quarter = Quarter.last_finished(today)
        choices = []
        for _index in range(8):
            choices.append((quarter.label, quarter.label))
            quarter = Quarter.containing(quarter.start - dt.timedelta(days=1))
        quarter_field = self.fields["quarter"]
        assert isinstance(quarter_field, forms.ChoiceField)
        quarter_field.choices = choices


@admin.register(BillingRun)
class BillingRunAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["quarter", "status", "started_at", "finished_at", "progress", "invoices_created", "error_count"]
    list_filter = ["status", "quarter"]
    list_select_related = ["started_by"]
    readonly_fields = [
        "quarter",
        "status",
        "started_at",
        "finished_at",
        "started_by",
        "progress",
        "invoices_created",
        "error_list",
    ]
    fields = tuple(readonly_fields)
    change_list_template = "admin/billing/billingrun/change_list.html"

    @admin.display(description=_("progress"))
    def progress(self, obj: BillingRun) -> str:
        return f"{obj.subscriptions_done}/{obj.subscriptions_total}"

    @admin.display(description=_("errors"))
    def error_count(self, obj: BillingRun) -> int:
        return len(obj.errors)

    @admin.display(description=_("errors per customer"))
    def error_list(self, obj: BillingRun) -> str:
        if not obj.errors:
            return "–"
        return format_html(
            "<ul>{}</ul>",
            format_html(
                "".join(
                    format_html("<li>{} ({}): {}</li>", e.get("customer"), e.get("customer_number"), e.get("error"))
                    for e in obj.errors
                )
            ),
        )

    def get_urls(self) -> list[Any]:
        return [
            path("run/", self.admin_site.admin_view(self.run_view), name="billing_billingrun_run"),
            *super().get_urls(),
        ]

    def run_view(self, request: HttpRequest) -> HttpResponse:
        """ "Run billing for quarter …": queued on the q2 cluster; progress shows on the run."""
        if not request.user.has_perm("billing.add_invoice"):
            raise PermissionDenied
        form = RunBillingForm(request.POST or None, today=timezone.localdate())
        if request.method == "POST" and form.is_valid():
            quarter = form.cleaned_data["quarter"]
            enqueue("billing.tasks.run_quarterly_billing", quarter, name=f"billing-run-{quarter}")
            self.message_user(
                request,
                gettext("Billing run for %(quarter)s started; it shows here when it runs.") % {"quarter": quarter},
                messages.SUCCESS,
            )
            return HttpResponseRedirect(reverse("admin:billing_billingrun_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Run billing for quarter"),
            "opts": self.model._meta,
            "form": form,
        }
        return TemplateResponse(request, "admin/billing/billingrun/run.html", context)


class InvoiceLineInline(ReadOnlyMixin, admin.TabularInline):
    model = InvoiceLine
    readonly_fields = ("position", "description", "quantity", "unit_price_display", "amount_display")
    fields = tuple(readonly_fields)
    extra = 0

    @admin.display(description=_("unit price"))
    def unit_price_display(self, obj: InvoiceLine) -> str:
        return format_nok(obj.unit_price)

    @admin.display(description=_("amount"))
    def amount_display(self, obj: InvoiceLine) -> str:
        return format_nok(obj.amount)


class InvoiceEventInline(ReadOnlyMixin, admin.TabularInline):
    model = InvoiceEvent
    readonly_fields = ("at", "kind", "user", "description")
    fields = tuple(readonly_fields)
    extra = 0

    @admin.display(description=_("what happened"))
    def description(self, obj: InvoiceEvent) -> str:
        return obj.description


class CreditReasonForm(forms.Form):
    reason = forms.CharField(label=_("Reason (printed on the credit note)"), max_length=300)


@admin.register(Invoice)
class InvoiceAdmin(ReadOnlyMixin, AuditedAdmin):
    list_display = [
        "number_display",
        "customer",
        "period",
        "status",
        "total_display",
        "issue_date",
        "due_date",
        "kid",
        "downloads",
    ]
    list_filter = ["status", "quarter", "customer__send_ehf"]
    list_select_related = ["customer"]
    search_fields = ["=number", "kid", "customer__name", "customer__org_number", "=customer__customer_number"]
    date_hierarchy = "period_start"
    show_full_result_count = False
    inlines = [InvoiceLineInline, InvoiceEventInline]
    readonly_fields = [
        "number",
        "status",
        "customer",
        "subscription",
        "quarter",
        "period_start",
        "period_end",
        "net_display",
        "vat_display",
        "total_display",
        "issue_date",
        "due_date",
        "kid",
        "paid_on",
        "buyer_name",
        "buyer_org_number",
        "buyer_address_line",
        "buyer_postal_code",
        "buyer_city",
        "buyer_email",
        "buyer_reference",
        "billing_run",
        "downloads",
    ]
    fields = tuple(readonly_fields)
    actions = ["issue_selected", "mark_paid", "credit_selected", "download_quarter_zip"]
    history_list_display = ["status", "total"]

    def revert_disabled(self, request: HttpRequest, obj: Any = None) -> bool:
        """Issued invoices are immutable: the history is there to read (accountants too), never to revert."""
        return True

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Only drafts may be deleted (to bill again); issued documents are permanent."""
        if obj is not None and obj.status != Invoice.Status.DRAFT:
            return False
        return request.user.has_perm("billing.delete_invoice")

    @admin.display(description=_("invoice number"), ordering="number")
    def number_display(self, obj: Invoice) -> str:
        return str(obj.number) if obj.number else gettext("draft")

    @admin.display(description=_("Quarter"), ordering="period_start")
    def period(self, obj: Invoice) -> str:
        """The quarter, with the dates only when the invoice covers part of it (go-live, end): keeps the list narrow."""
        quarter = Quarter.parse(obj.quarter)
        if (obj.period_start, obj.period_end) == (quarter.start, quarter.end):
            return obj.quarter
        return f"{obj.quarter} ({obj.period_start:%d.%m.}–{obj.period_end:%d.%m.})"

    @admin.display(description=_("net"))
    def net_display(self, obj: Invoice) -> str:
        return format_nok(obj.net)

    @admin.display(description=_("VAT"))
    def vat_display(self, obj: Invoice) -> str:
        return format_nok(obj.vat)

    @admin.display(description=_("total"), ordering="total")
    def total_display(self, obj: Invoice) -> str:
        return format_nok(obj.total)

    @admin.display(description=_("download"))
    def downloads(self, obj: Invoice) -> str:
        if obj.number is None:
            return "–"
        return format_html(
            '<a href="{}">PDF</a> · <a href="{}">EHF</a>',
            reverse("admin:billing_invoice_pdf", args=[obj.pk]),
            reverse("admin:billing_invoice_ehf", args=[obj.pk]),
        )

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view
        return [
            path("<int:pk>/pdf/", view(self.pdf_view), name="billing_invoice_pdf"),
            path("<int:pk>/ehf/", view(self.ehf_view), name="billing_invoice_ehf"),
            path("quarter/<str:quarter>.zip", view(self.zip_view), name="billing_invoice_quarter_zip"),
            *super().get_urls(),
        ]

    def _issued(self, request: HttpRequest, pk: int) -> Invoice:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return get_object_or_404(Invoice.objects.select_related("customer").exclude(number=None), pk=pk)

    def pdf_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        invoice = self._issued(request, pk)
        return ExportedDocument(services.document_for_invoice(invoice)).pdf_download()

    def ehf_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        invoice = self._issued(request, pk)
        return ExportedDocument(services.document_for_invoice(invoice)).ehf_download()

    def zip_view(self, request: HttpRequest, quarter: str) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            parsed = Quarter.parse(quarter)
        except ValueError as error:
            raise Http404(str(error)) from error
        return download(quarter_zip(parsed), f"kalenderpush-{parsed.label}.zip", "application/zip")

    @admin.action(description=_("Issue selected drafts"), permissions=["issue"])
    def issue_selected(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> None:
        drafts = list(
            queryset.filter(status=Invoice.Status.DRAFT)
            .order_by("customer__customer_number")
            .values_list("pk", flat=True)
        )
        result = services.issue_drafts(invoice_ids=drafts, issued_by=request.user)  # type: ignore[arg-type]
        if result.issued:
            self.message_user(
                request,
                ngettext("%(count)d invoice issued.", "%(count)d invoices issued.", len(result.issued))
                % {"count": len(result.issued)},
                messages.SUCCESS,
            )
        for error in result.errors:
            self.message_user(request, error, messages.ERROR)
        if not drafts:
            self.message_user(request, gettext("No drafts among the selected invoices."), messages.WARNING)

    def has_issue_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("billing.add_invoice")

    @admin.action(description=_("Mark as paid today"), permissions=["issue"])
    def mark_paid(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> None:
        today = timezone.localdate()
        for invoice in queryset:
            try:
                services.mark_paid(invoice_id=invoice.pk, paid_on=today, by=request.user)  # type: ignore[arg-type]
            except ValidationError as error:
                self.message_user(request, "; ".join(error.messages), messages.ERROR)

    @admin.action(description=_("Credit selected invoices…"), permissions=["issue"])
    def credit_selected(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> HttpResponse | None:
        form = CreditReasonForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            for invoice in queryset:
                try:
                    note = services.credit_invoice(
                        invoice_id=invoice.pk, reason=form.cleaned_data["reason"], by=request.user
                    )  # type: ignore[arg-type]
                    self.message_user(
                        request,
                        gettext("Credit note %(number)s made for invoice %(invoice)s.")
                        % {"number": note.number, "invoice": invoice.number},
                        messages.SUCCESS,
                    )
                except ValidationError as error:
                    self.message_user(request, "; ".join(error.messages), messages.ERROR)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Credit invoices"),
            "opts": self.model._meta,
            "form": form,
            "queryset": queryset,
            "action": "credit_selected",
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/billing/invoice/credit.html", context)

    @admin.action(description=_("Download the quarter's ZIP (PDF, EHF, CSV)"))
    def download_quarter_zip(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> HttpResponse | None:
        quarters = sorted(set(queryset.values_list("quarter", flat=True)))
        if len(quarters) != 1:
            self.message_user(request, gettext("Select invoices of one quarter."), messages.ERROR)
            return None
        return HttpResponseRedirect(reverse("admin:billing_invoice_quarter_zip", args=[quarters[0]]))


class CreditNoteLineInline(ReadOnlyMixin, admin.TabularInline):
    model = CreditNoteLine
    readonly_fields = ("position", "description", "quantity", "unit_price", "amount")
    fields = tuple(readonly_fields)
    extra = 0


@admin.register(CreditNote)
class CreditNoteAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["number", "invoice", "issue_date", "reason", "total_display", "downloads"]
    list_select_related = ["invoice", "invoice__customer"]
    search_fields = ["=number", "=invoice__number", "invoice__customer__name"]
    date_hierarchy = "issue_date"
    inlines = [CreditNoteLineInline]
    readonly_fields = ["number", "invoice", "issue_date", "reason", "net", "vat", "total", "created_by", "downloads"]
    fields = tuple(readonly_fields)

    @admin.display(description=_("total"), ordering="total")
    def total_display(self, obj: CreditNote) -> str:
        return format_nok(obj.total)

    @admin.display(description=_("download"))
    def downloads(self, obj: CreditNote) -> str:
        return format_html(
            '<a href="{}">PDF</a> · <a href="{}">EHF</a>',
            reverse("admin:billing_creditnote_pdf", args=[obj.pk]),
            reverse("admin:billing_creditnote_ehf", args=[obj.pk]),
        )

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view
        return [
            path("<int:pk>/pdf/", view(self.pdf_view), name="billing_creditnote_pdf"),
            path("<int:pk>/ehf/", view(self.ehf_view), name="billing_creditnote_ehf"),
            *super().get_urls(),
        ]

    def _note(self, request: HttpRequest, pk: int) -> CreditNote:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return get_object_or_404(CreditNote.objects.select_related("invoice__customer"), pk=pk)

    def pdf_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        note = self._note(request, pk)
        return ExportedDocument(services.document_for_credit_note(note)).pdf_download()

    def ehf_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        note = self._note(request, pk)
        return ExportedDocument(services.document_for_credit_note(note)).ehf_download()


# --- Subscriptions: go-live, notice and the termination letter (billing's services) ---------------------


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
class SubscriptionAdmin(TermEndsMixin, AuditedAdmin):
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
        return format_date(obj.go_live)

    @admin.display(description=Subscription._meta.get_field("notice_received").verbose_name, ordering="notice_received")
    def notice_received_display(self, obj: Subscription) -> str:
        return format_date(obj.notice_received)

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
                        customer_services.mark_live(subscription=subscription, go_live=go_live, by=request.user)
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
                    services.register_notice(subscription_id=subscription.pk, notice_received=notice, by=request.user)
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
                    preview = services.termination_for(subscription, notice_received=notice)
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
        if not self.has_view_permission(request):
            raise PermissionDenied
        subscription = get_object_or_404(Subscription.objects.select_related("customer"), pk=pk)
        try:
            letter = services.termination_letter(subscription=subscription)
        except ValidationError as error:
            raise Http404("; ".join(error.messages)) from error
        response = HttpResponse(render_termination_letter_pdf(letter), content_type="application/pdf")
        response["Content-Disposition"] = (
            f'attachment; filename="oppsigelse-{subscription.customer.customer_number}.pdf"'
        )
        return response


@admin.register(DocumentCounter)
class DocumentCounterAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["series", "last_number"]
