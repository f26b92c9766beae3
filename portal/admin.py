"""Staff invite customers' IT admins and accountants to the portal here (an e-mail with a password link)."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from simple_history.admin import SimpleHistoryAdmin

from common.authentication import login_name
from customers.models import Customer
from portal import services
from portal.models import PortalMembership


class InvitationForm(forms.ModelForm):
    email = forms.EmailField(label=_("E-mail"), help_text=_("The login's user name; the invitation is sent here."))
    name = forms.CharField(label=_("Name"), max_length=150, required=False)

    class Meta:
        model = PortalMembership
        fields = ["customer", "email", "name", "role"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        customer: Customer | None = data.get("customer")
        email = data.get("email")
        if customer and email:
            try:
                services.check_invitable(customer=customer, email=login_name(email))
            except ValidationError as refusal:
                self.add_error(None, refusal)
        return data


@admin.register(PortalMembership)
class PortalMembershipAdmin(SimpleHistoryAdmin):
    list_display = ["email", "name", "customer", "role", "invited_at", "last_login"]
    list_filter = ["role", "customer"]
    list_select_related = ["user", "customer"]
    search_fields = ["user__email", "user__first_name", "user__last_name", "customer__name"]
    autocomplete_fields = ["customer"]
    readonly_fields = ["user", "invited_at", "invited_by", "last_login"]
    actions = ["send_invitation"]

    @admin.display(description=_("e-mail"), ordering="user__email")
    def email(self, obj: PortalMembership) -> str:
        return obj.user.email

    @admin.display(description=_("name"))
    def name(self, obj: PortalMembership) -> str:
        return obj.user.get_full_name()

    @admin.display(description=_("last sign-in"), ordering="user__last_login")
    def last_login(self, obj: PortalMembership) -> Any:
        return obj.user.last_login

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = InvitationForm
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ["customer", "email", "name", "role"]
        return ["user", "customer", "role", "invited_at", "invited_by", "last_login"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [] if obj is None else [*self.readonly_fields, "customer"]

    def save_model(self, request: HttpRequest, obj: PortalMembership, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        try:
            membership = services.invite(
                customer=form.cleaned_data["customer"],
                email=form.cleaned_data["email"],
                name=form.cleaned_data["name"],
                role=form.cleaned_data["role"],
                invited_by=request.user,
            )
        except ValidationError as error:  # raced with another invitation: the form checked the rest
            raise ValidationError(error.messages) from error
        obj.pk = membership.pk
        obj.user = membership.user
        messages.success(request, _("An invitation was sent to %(email)s.") % {"email": membership.user.email})

    @admin.action(description=_("Send the invitation again"))
    def send_invitation(self, request: HttpRequest, queryset: QuerySet[PortalMembership]) -> None:
        sent = 0
        for membership in queryset.select_related("user", "customer"):
            try:
                services.invite(
                    customer=membership.customer,
                    email=membership.user.email,
                    name=membership.user.get_full_name(),
                    role=membership.role,
                    invited_by=request.user,
                )
            except ValidationError as refusal:
                messages.error(request, " ".join(refusal.messages))
            else:
                sent += 1
        if sent:
            messages.success(request, _("%(count)s invitations were sent.") % {"count": sent})
