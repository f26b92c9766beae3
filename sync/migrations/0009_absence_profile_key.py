"""A fixed key on the absence profiles the application needs: new customers' default profiles.

The profiles are found by the code the seed (0002) gave them, else by their seeded full name; one that
is gone is created again from the seed's values.
"""

from django.db import migrations, models
from django.db.models import Q

KEYED = [
    # key, short code, full name, profile shown, MBN reason (as seeded by 0002)
    ("meeting", "Møt", "Møte", "Møte", "Møte"),
    ("unavailable", "Ikt", "Ikke tilgjengelig", "Ikke tilgjengelig", "Opptatt"),
]


def set_keys(apps, schema_editor):
    AbsenceProfile = apps.get_model("sync", "AbsenceProfile")
    for key, short_code, full_name, profile, mbn_reason in KEYED:
        found = (
            AbsenceProfile.objects.filter(short_code__iexact=short_code).first()
            or AbsenceProfile.objects.filter(full_name__iexact=full_name).first()
        )
        if found is None:
            AbsenceProfile.objects.create(
                key=key, short_code=short_code, full_name=full_name, profile=profile, mbn_reason=mbn_reason
            )
        else:
            found.key = key
            found.save(update_fields=["key"])


def clear_keys(apps, schema_editor):
    apps.get_model("sync", "AbsenceProfile").objects.filter(~Q(key=None)).update(key=None)


class Migration(migrations.Migration):
    dependencies = [
        ("sync", "0008_unmatched_is_not_an_error"),
    ]

    operations = [
        migrations.AddField(
            model_name="absenceprofile",
            name="key",
            field=models.SlugField(
                blank=True,
                editable=False,
                help_text="How the application finds a profile it needs; renaming the profile does not change it.",
                max_length=30,
                null=True,
                unique=True,
                verbose_name="key",
            ),
        ),
        migrations.RunPython(set_keys, clear_keys),
    ]
