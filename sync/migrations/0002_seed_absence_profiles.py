"""Seeds the absence-profile catalogue from the table in calendar-rules.md §1."""

from django.db import migrations

PROFILES = [
    # short code, full name, profile shown, MBN reason
    ("Ikf", "Ikke Forstyrr", "Ikke Forstyrr", "Ikke Forstyrr"),
    ("Gåt", "Gått for dagen", "Gått for dagen", "Fri"),
    ("Eks", "Ekstern avtale", "Ekstern avtale", "Eksternt Møte"),
    ("Møt", "Møte", "Møte", "Møte"),
    ("For", "Forretningsreise", "Forretningsreise", "Jobbreise"),
    ("Ute", "Ute til lunch", "Ute til lunch", "Lunch"),
    ("Ferie", "Ferie", "Ferie", "Ferie"),
    ("Ikt", "Ikke tilgjengelig", "Ikke tilgjengelig", "Opptatt"),
    ("Sna", "Snart tilbake", "Snart tilbake", "Pause"),
    ("Syk", "Syk", "Syk", "Syk"),
    ("Per", "Permisjon", "Permisjon", "Permisjon"),
]


def seed(apps, schema_editor):
    AbsenceProfile = apps.get_model("sync", "AbsenceProfile")
    for position, (short_code, full_name, profile, mbn_reason) in enumerate(PROFILES, start=1):
        AbsenceProfile.objects.get_or_create(
            short_code=short_code,
            defaults={"full_name": full_name, "profile": profile, "mbn_reason": mbn_reason, "position": position},
        )


def unseed(apps, schema_editor):
    AbsenceProfile = apps.get_model("sync", "AbsenceProfile")
    AbsenceProfile.objects.filter(short_code__in=[row[0] for row in PROFILES]).delete()


class Migration(migrations.Migration):
    dependencies = [("sync", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
