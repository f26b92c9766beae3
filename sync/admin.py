"""Admin for the absence-profile catalogue, calendar sources, MBN connections and the sync records."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from common.json_input import JSONInputError, parse_json
from customers.admin import AuditedAdmin
from customers.models import ServiceUser
from sync.errors import describe
from sync.models import (
    AbsenceProfile,
    CalendarSource,
    CalendarUser,
    ConnectionEvent,
    MbnConnection,
    PushedAbsence,
    SyncRun,
)
from sync.pipeline import new_provider


@admin.register(AbsenceProfile)
class AbsenceProfileAdmin(admin.ModelAdmin):
    list_display = ["short_code", "full_name", "profile", "mbn_reason", "position"]
    list_editable = ["position"]
    search_fields = ["short_code", "full_name", "profile", "mbn_reason"]
    ordering = ["position", "full_name"]
    readonly_fields = ["key"]

    def has_delete_permission(self, request: HttpRequest, obj: AbsenceProfile | None = None) -> bool:
        """A profile the application needs (it has a key: new customers' defaults) cannot be deleted."""
        if obj is not None and obj.key:
            return False
        return super().has_delete_permission(request, obj)


class CalendarSourceForm(forms.ModelForm):
    endpoint = forms.URLField(
        label=_("EWS endpoint"),
        required=False,
        assume_scheme="https",
        help_text=_("Exchange on-premises: https://mail.firma.no/EWS/Exchange.asmx"),
    )
    secret = forms.CharField(
        label=_("Client secret or password"),
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text=_(
            "Microsoft 365: the app's client secret; Exchange: the service account's password. "
            "Stored encrypted; leave empty to keep the current one."
        ),
    )
    service_account_key = forms.CharField(
        label=_("Service-account key (JSON)"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "autocomplete": "off"}),
        help_text=_("Google Workspace: the key file's content. Stored encrypted; leave empty to keep the current one."),
    )

    class Meta:
        model = CalendarSource
        fields = [
            "customer",
            "kind",
            "tenant_id",
            "uses_nettsoft_app",
            "client_id",
            "endpoint",
            "username",
            "admin_subject",
            "activation_group",
            "active",
            "sweep_minutes",
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = data.get("kind")
        has_secret = bool(data.get("secret") or (self.instance.pk and self.instance.secret_encrypted))
        # Nettsoft's app (Microsoft 365) or service account (Google) from the settings: no credentials here
        nettsoft = bool(data.get("uses_nettsoft_app")) and kind != CalendarSource.Kind.EWS
        required = {
            CalendarSource.Kind.GRAPH: ["tenant_id"] if nettsoft else ["tenant_id", "client_id"],
            CalendarSource.Kind.EWS: ["endpoint", "username"],
            CalendarSource.Kind.GOOGLE: ["admin_subject"],
        }.get(CalendarSource.Kind(kind) if kind else CalendarSource.Kind.GRAPH, [])
        for name in required:
            if not data.get(name):
                self.add_error(name, gettext("Required for this kind of calendar."))
        if data.get("active") and not data.get("activation_group"):  # blank only while a consent awaits its group
            self.add_error("activation_group", gettext("An active source needs its activation group."))
        key = data.get("service_account_key")
        if nettsoft:
            return data
        if kind == CalendarSource.Kind.GOOGLE:
            if key:
                try:
                    info = parse_json(key)
                    assert isinstance(info, dict) and info.get("private_key") and info.get("client_email")
                except (JSONInputError, AssertionError):
                    self.add_error(
                        "service_account_key",
                        gettext(
                            "Paste the whole JSON key file of the service account (with private_key and client_email)."
                        ),
                    )
            elif not has_secret:
                self.add_error("service_account_key", gettext("Required for Google Workspace."))
        elif not has_secret:
            self.add_error("secret", gettext("Required for this kind of calendar."))
        return data

    def save(self, commit: bool = True) -> CalendarSource:
        source = super().save(commit=False)
        secret = self.cleaned_data.get("service_account_key") or self.cleaned_data.get("secret")
        if secret:
            source.set_secret(secret)
        if commit:
            source.save()
        return source


@admin.register(CalendarSource)
class CalendarSourceAdmin(AuditedAdmin):
    form = CalendarSourceForm
    list_display = [
        "customer",
        "kind",
        "activation_group",
        "active",
        "uses_nettsoft_app",
        "last_success_at",
        "short_error",
        "has_secret",
    ]
    list_filter = ["kind", "active", "uses_nettsoft_app"]
    list_select_related = ["customer"]
    search_fields = ["customer__name", "tenant_id", "activation_group"]
    autocomplete_fields = ["customer"]
    readonly_fields = ["last_success_at", "error_explained", "last_error"]
    actions = ["test_connection"]
    history_list_display = ["kind", "active"]

    def revert_disabled(self, request: HttpRequest, obj: Any = None) -> bool:
        """The history holds no secret (by design), so an old version saved back would wipe it."""
        return True

    @admin.display(description=_("secret set"), boolean=True)
    def has_secret(self, obj: CalendarSource) -> bool:
        return bool(obj.secret_encrypted)

    @admin.display(description=_("last error"))
    def short_error(self, obj: CalendarSource) -> str:
        return worded_error(obj.last_error_code, obj.last_error)

    @admin.display(description=_("what to do"))
    def error_explained(self, obj: CalendarSource) -> str:
        return explained_error(obj.last_error_code, obj.last_error)

    @admin.action(description=_("Test connection"))
    def test_connection(self, request: HttpRequest, queryset: QuerySet[CalendarSource]) -> None:
        for source in queryset.select_related("customer"):
            try:
                provider = new_provider(source)  # a real sign-in: not the sync's cached token
                problems = provider.check()
                if source.activation_group:
                    members = provider.list_users(source.activation_group)
            except Exception as error:  # every failure is reported to staff in words
                problems, members = [str(error)], []
            if problems:
                self.message_user(request, f"{source}: " + " ".join(problems), messages.ERROR)
            else:
                self.message_user(
                    request,
                    gettext("%(source)s works: %(count)d users in the activation group.")
                    % {"source": source, "count": len(members)},
                    messages.SUCCESS,
                )


class MbnConnectionForm(forms.ModelForm):
    client_secret = forms.CharField(
        label=_("Client secret"),
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text=_("Stored encrypted; leave empty to keep the current one."),
    )
    password = forms.CharField(
        label=_("Password"),
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text=_("Stored encrypted; leave empty to keep the current one."),
    )

    class Meta:
        model = MbnConnection
        fields = ["customer", "enterprise_id", "client_id", "username"]

    def save(self, commit: bool = True) -> MbnConnection:
        connection = super().save(commit=False)
        connection.set_secrets(
            client_secret=self.cleaned_data.get("client_secret") or None,
            password=self.cleaned_data.get("password") or None,
        )
        if commit:
            connection.save()
        return connection


@admin.register(MbnConnection)
class MbnConnectionAdmin(admin.ModelAdmin):
    form = MbnConnectionForm
    list_display = ["customer", "enterprise_id", "client_id", "username"]
    list_select_related = ["customer"]
    search_fields = ["customer__name", "enterprise_id"]
    autocomplete_fields = ["customer"]


def worded_error(code: str, text: str) -> str:
    """A recorded error for a list: its title in the reader's language, the English text on hover."""
    if not text:
        return "–"
    title, _advice = describe(code)
    return format_html('<span title="{}">{}</span>', text, title)


def explained_error(code: str, text: str) -> str:
    """A recorded error on a change page: the title and advice the customer's portal shows, and the text."""
    if not text:
        return "–"
    title, advice = describe(code)
    return format_html("<strong>{}</strong><br>{}<br><code>{}</code>", title, advice, text)


class ReadOnly:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class SyncStateFilter(admin.SimpleListFilter):
    """The user states of `ServiceUserQuerySet`, so admin lists exactly what the dashboard counts."""

    title = _("sync state")
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("failing", _("last sync failed")), ("unmatched", _("not connected to MBN"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "failing":
            return queryset.filter(service_user__in=ServiceUser.objects.failing())
        if self.value() == "unmatched":
            return queryset.filter(service_user__in=ServiceUser.objects.unmatched())
        return queryset


@admin.register(CalendarUser)
class CalendarUserAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ["service_user", "customer", "matched", "last_synced_at", "error", "subscription_expires"]
    list_filter = [SyncStateFilter, "source__kind", "source__customer"]
    list_select_related = ["service_user__customer", "source"]
    search_fields = ["service_user__email", "service_user__name", "service_user__customer__name"]
    show_full_result_count = False
    exclude = ["client_state"]
    readonly_fields = ["error_explained"]

    @admin.display(description=_("customer"))
    def customer(self, obj: CalendarUser) -> str:
        return obj.service_user.customer.name

    @admin.display(description=_("last error"))
    def error(self, obj: CalendarUser) -> str:
        return worded_error(obj.last_error_code, obj.last_error)

    @admin.display(description=_("what to do"))
    def error_explained(self, obj: CalendarUser) -> str:
        return explained_error(obj.last_error_code, obj.last_error)

    @admin.display(description=_("matched"), boolean=True)
    def matched(self, obj: CalendarUser) -> bool:
        return bool(obj.service_user.msisdn)


@admin.register(SyncRun)
class SyncRunAdmin(ReadOnly, admin.ModelAdmin):
    list_display = [  # the kind is a filter: a source cycle is the run without a user
        "started_at",
        "customer",
        "service_user",
        "events_read",
        "changes",
        "mbn_requests",
        "latency_ms",
        "worded_error",
    ]
    list_filter = ["kind", "source__customer"]
    list_select_related = ["source__customer", "service_user"]
    date_hierarchy = "started_at"
    show_full_result_count = False
    readonly_fields = ["error_explained"]

    @admin.display(description=_("error"))
    def worded_error(self, obj: SyncRun) -> str:
        return worded_error(obj.error_code, obj.error)

    @admin.display(description=_("what to do"))
    def error_explained(self, obj: SyncRun) -> str:
        return explained_error(obj.error_code, obj.error)

    @admin.display(description=_("customer"), ordering="source__customer__name")
    def customer(self, obj: SyncRun) -> str:
        return obj.source.customer.name

    @admin.display(description=_("Created / updated / deleted"))
    def changes(self, obj: SyncRun) -> str:
        return f"{obj.created} / {obj.updated} / {obj.deleted}"


@admin.register(PushedAbsence)
class PushedAbsenceAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ["service_user", "reason", "start", "end", "diversion"]
    list_select_related = ["service_user"]
    search_fields = ["service_user__email"]
    show_full_result_count = False


@admin.register(ConnectionEvent)
class ConnectionEventAdmin(ReadOnly, admin.ModelAdmin):
    """The connection audit (sync.connections writes it): every consent, choice, save and test, never edited."""

    list_display = ["at", "customer", "connection", "action", "error_code", "actor", "sentence"]
    list_filter = ["connection", "action", "error_code"]
    list_select_related = ["customer", "actor"]
    search_fields = ["customer__name"]
    date_hierarchy = "at"
    show_full_result_count = False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("what happened"))
    def sentence(self, obj: ConnectionEvent) -> str:
        return obj.describe()
