"""Portal actions: invitations, settings and override changes (with a resync), termination requests."""

import datetime as dt
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django.utils.translation import gettext as _

from billing.core.invoicing import Termination
from billing.services import register_notice
from customers.models import Customer, CustomerSettings, ServiceUser, Subscription
from kalenderpush.authentication import login_name
from portal import selectors
from portal.models import PortalMembership
from sync.models import CalendarUser
from sync.services import queue_syncs

User = get_user_model()


def set_password_link(*, user: Any) -> str:
    """An absolute one-time link where the user chooses a password (Django's password-reset token)."""
    path = reverse(
        "portal:password_reset_confirm",
        kwargs={
            "uidb64": urlsafe_base64_encode(force_bytes(user.pk)),
            "token": default_token_generator.make_token(user),
        },
    )
    return settings.PUBLIC_BASE_URL.rstrip("/") + path


def check_invitable(*, customer: Customer, email: str) -> list[Any]:
    """Refuse an address that is a staff login's, or a login's with portal access for another customer;
    return the logins already using the address (user name or e-mail, in any case).

    Staff are never portal users: a staff login found by its user name or by its e-mail is refused, so
    no second, portal account is made for a staff address.
    """
    logins = selectors.logins_for_address(email)
    if any(login.is_staff or login.is_superuser for login in logins):
        raise ValidationError(
            {
                "email": _(
                    "%(email)s belongs to a Nettsoft staff login, and staff cannot be portal users. "
                    "Use the customer's own address."
                )
                % {"email": email}
            }
        )
    if PortalMembership.objects.filter(user__in=logins).exclude(customer=customer).exists():
        raise ValidationError(
            {"email": _("%(email)s already has portal access for another customer.") % {"email": email}}
        )
    return logins


def invite(*, customer: Customer, email: str, name: str, role: str, invited_by: Any = None) -> PortalMembership:
    """Create (or re-invite) a portal login for a customer and e-mail a link to choose a password.

    A login belongs to one customer: an address already used for another customer, or by staff, is refused
    (check_invitable). New logins are stored with the address lower-case as user name and e-mail.
    """
    email = login_name(email)
    with transaction.atomic():
        logins = check_invitable(customer=customer, email=email)
        membership = PortalMembership.objects.filter(user__in=logins, customer=customer).select_related("user").first()
        user = membership.user if membership else next((u for u in logins if login_name(u.username) == email), None)
        if user is None:
            first, _space, last = name.strip().partition(" ")
            user = User.objects.create_user(username=email, email=email, first_name=first, last_name=last)
            user.set_unusable_password()
            user.save(update_fields=["password"])
        if membership is None:
            membership = PortalMembership(user=user, customer=customer)
        membership.role = role
        membership.invited_at = timezone.now()
        membership.invited_by = invited_by
        membership.save()
        link = set_password_link(user=user)
        transaction.on_commit(lambda: _send_invitation(membership, link))
    return membership


def _send_invitation(membership: PortalMembership, link: str) -> None:
    with translation.override("nb"):
        context = {"membership": membership, "link": link, "customer": membership.customer}
        send_mail(
            _("Your access to Kalender Push"),
            render_to_string("portal/email/invitation.txt", context),
            None,
            [membership.user.email],
        )


def save_settings(*, customer_settings: CustomerSettings) -> int:
    """Store changed calendar settings and resync every calendar of the customer; returns how many."""
    with transaction.atomic():
        customer_settings.full_clean()
        customer_settings.save()
        ids = list(
            CalendarUser.objects.filter(service_user__customer_id=customer_settings.customer_id).values_list(
                "pk", flat=True
            )
        )
        queue_syncs(calendar_user_ids=ids)
    return len(ids)


def save_user_overrides(*, service_user: ServiceUser) -> None:
    """Store a user's own default profile / divert choice and resync that user's calendar."""
    with transaction.atomic():
        service_user.full_clean()
        service_user.save(update_fields=["default_profile", "divert_by_default"])
        queue_syncs(
            calendar_user_ids=CalendarUser.objects.filter(service_user=service_user).values_list("pk", flat=True)
        )


def request_termination(*, subscription: Subscription, requested_by: Any, today: dt.date) -> Termination | None:
    """The customer's written notice, given in the portal today: recorded at once, and staff are told."""
    result = register_notice(subscription_id=subscription.pk, notice_received=today, by=requested_by)
    subscription.refresh_from_db()
    context = {
        "subscription": subscription,
        "customer": subscription.customer,
        "requested_by": requested_by,
        "result": result,
        "admin_url": settings.PUBLIC_BASE_URL.rstrip("/")
        + reverse("admin:customers_subscription_change", args=[subscription.pk]),
    }
    with translation.override("nb"):
        send_mail(
            _("Termination from %(customer)s") % {"customer": subscription.customer.name},
            render_to_string("portal/email/termination_staff.txt", context),
            None,
            [settings.STAFF_NOTIFICATION_EMAIL],
        )
        if requested_by.email:
            send_mail(
                _("We have received your termination of Kalender Push"),
                render_to_string("portal/email/termination_customer.txt", context),
                None,
                [requested_by.email],
            )
    return result
