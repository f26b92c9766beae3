"""Who may use the customer portal, for which customer, and in which role."""

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords


class PortalMembership(models.Model):
    """A login's access to one customer's portal: IT admin (everything) or accountant (invoices only)."""

    class Role(models.TextChoices):
        ADMIN = "admin", _("Administrator")
        ACCOUNTANT = "accountant", _("Accountant")

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="portal_membership", verbose_name=_("user")
    )
    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.CASCADE, related_name="portal_memberships", verbose_name=_("customer")
    )
    role = models.CharField(_("role"), max_length=20, choices=Role.choices, default=Role.ADMIN)
    invited_at = models.DateTimeField(_("invited"), null=True, blank=True)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("invited by"),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    history = HistoricalRecords()

    class Meta:
        verbose_name = _("portal user")
        verbose_name_plural = _("portal users")
        ordering = ["customer", "user__email"]

    def __str__(self) -> str:
        return f"{self.user.email or self.user.get_username()} ({self.get_role_display()}, {self.customer.name})"

    @property
    def is_admin(self) -> bool:
        return self.role == self.Role.ADMIN
