"""Portal logins' user names and e-mail addresses in lower case, as new invitations store them.

Sign-in matches user names in any case (common.authentication), but a login stored as
`Kari@Firma.no` would still be told apart from one made later as `kari@firma.no`. Only portal members
who are not staff are changed. Where lower-casing a user name would give one that another login already
has (in any case), both are left as they are and a warning names them: staff then merge or rename them
in admin › Users. Until then each still signs in with its exact spelling.
"""

import logging

from django.conf import settings
from django.db import migrations
from django.db.models import Q

log = logging.getLogger(__name__)


def lowercase_portal_logins(apps, schema_editor):  # type: ignore[no-untyped-def]
    User = apps.get_model(settings.AUTH_USER_MODEL)
    PortalMembership = apps.get_model("portal", "PortalMembership")
    members = User.objects.filter(
        pk__in=PortalMembership.objects.values("user_id"), is_staff=False, is_superuser=False
    ).order_by("pk")
    for user in members:
        username, email = user.username.lower(), user.email.lower()
        if username == user.username and email == user.email:
            continue
        same_name = Q(username__iexact=user.username) | Q(username=username)  # iexact may be ASCII-only
        clash = User.objects.filter(same_name).exclude(pk=user.pk).first()
        if clash is not None:
            log.warning(
                "Portal login %r (id %s) left as it is: its lower-case user name is taken by %r (id %s). "
                "Merge or rename the two in admin › Users.",
                user.username,
                user.pk,
                clash.username,
                clash.pk,
            )
            continue
        user.username, user.email = username, email
        user.save(update_fields=["username", "email"])


class Migration(migrations.Migration):
    dependencies = [
        ("portal", "0001_portal_membership"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [migrations.RunPython(lowercase_portal_logins, migrations.RunPython.noop)]
