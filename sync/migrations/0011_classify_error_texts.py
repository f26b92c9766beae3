"""Give the errors recorded before error codes existed a code, once, by the substring rules the portal used to
guess with (portal/problems.py until error codes), made finer where the old texts allow it. Texts stay as they
are; anything no rule recognises becomes "unknown" (worded "The last sync failed")."""

from django.db import migrations

# (needles, code): the first rule with a needle in the case-folded text wins.
RULES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("manual absence in mbn overlaps",), "mbn_conflict_manual_absence"),
    (("mbn_base_url",), "mbn_not_configured"),
    (
        ("mbn refused the app", "mbn refused the api user", "mbn refused the login", "mbn credentials"),
        "mbn_auth_failed",
    ),
    (("mbn is throttling",), "mbn_throttled"),
    (("mbn does not know this subscriber",), "mbn_subscriber_not_found"),
    (("mbn rejected the request", "mbn answered http", "mbn refused an overlapping"), "mbn_refused"),
    (("mbn (", "mbn did not answer", "mbn sent", "mbn is unavailable", "mbn's token", "mbn:"), "mbn_unavailable"),
    (("mailboxnotenabledforrestapi", "has no mailbox in exchange online"), "mailbox_not_enabled"),
    (("outside the app's access scope",), "mailbox_out_of_scope"),
    (("no mailbox", "has no mailbox", "check the address"), "mailbox_not_found"),
    (("refused the request (http",), "request_refused"),
    (("permission", "consent", "impersonat", "forbidden", "403", "not allowed"), "permission_missing"),
    (
        ("secret", "password", "credential", "login", "sign in", "token", "tenant", "unauthor", "401", "aadsts"),
        "auth_failed",
    ),
    (("throttl", "429"), "throttled"),
    (("timeout", "timed out", "did not answer"), "timeout"),
    (("could not be reached", "unavailable", "503", "502", "500"), "service_unavailable"),
    (("did not find", "does not know"), "not_found"),
)


def classify(text: str) -> str:
    """The error code for a recorded English error text."""
    folded = text.casefold()
    for needles, code in RULES:
        if any(needle in folded for needle in needles):
            return code
    return "unknown"


def classify_recorded_errors(apps, schema_editor):  # type: ignore[no-untyped-def]
    for model, text_field, code_field in (
        ("CalendarUser", "last_error", "last_error_code"),
        ("CalendarSource", "last_error", "last_error_code"),
        ("SyncRun", "error", "error_code"),
    ):
        rows = apps.get_model("sync", model).objects.filter(**{code_field: ""}).exclude(**{text_field: ""})
        for text in set(rows.values_list(text_field, flat=True)):
            rows.filter(**{text_field: text}).update(**{code_field: classify(text)})


class Migration(migrations.Migration):
    dependencies = [("sync", "0010_error_codes")]

    operations = [migrations.RunPython(classify_recorded_errors, migrations.RunPython.noop)]
