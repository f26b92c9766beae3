"""The fresh-clone path: seed_demo, billing_run --issue for the last finished quarter, export_invoices."""

import io

import pytest
from django.core.management import call_command
from django.utils import timezone

from billing.models import Invoice
from billing.quarters import Quarter
from tests.billing.test_exports import assert_export_agrees

pytestmark = pytest.mark.django_db


def test_the_demo_bills_its_last_finished_quarter(settings, tmp_path):
    settings.DEMO_STATE_DIR = tmp_path / "state"
    call_command("seed_demo", stdout=io.StringIO())
    label = Quarter.last_finished(timezone.localdate()).label
    out = io.StringIO()
    call_command("billing_run", "--quarter", label, "--issue", stdout=out, stderr=io.StringIO())
    issued = Invoice.objects.filter(quarter=label, status=Invoice.Status.ISSUED)
    assert issued.count() >= 3
    assert issued.filter(lines__kind="minimum").exists()
    assert f"Issued {issued.count()} invoice(s)" in out.getvalue()
    call_command("export_invoices", "--quarter", label, str(tmp_path / "out"), stdout=io.StringIO())
    documents = assert_export_agrees(tmp_path / "out", label)
    assert len(documents) == issued.count()
    # a second run changes nothing
    call_command("billing_run", "--quarter", label, stdout=io.StringIO(), stderr=io.StringIO())
    assert Invoice.objects.filter(quarter=label).count() == issued.count()


def test_bench_billing_reports_constant_queries_per_invoice():
    import json

    figures = []
    for customers in (4, 16):
        out = io.StringIO()
        call_command("bench_billing", "--customers", str(customers), "--users", "3", "--json", stdout=out)
        figures.append(json.loads(out.getvalue()))
    assert [f["invoices"] for f in figures] == [4, 16]
    assert figures[0]["queries_per_invoice"] >= figures[1]["queries_per_invoice"]
    marginal = (figures[1]["queries"] - figures[0]["queries"]) / 12  # queries per extra invoice
    assert marginal <= 8
    assert not Invoice.objects.exists(), "bench_billing leaves the database as it was"
