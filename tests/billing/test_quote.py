"""billing.md's worked examples A–D through `billing_quote`, and its bad input."""

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def quote(payload, tmp_path):
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(payload))
    out = io.StringIO()
    call_command("billing_quote", str(path), stdout=out)
    return json.loads(out.getvalue())


def lines(invoice):
    return [
        (line["kind"], line["month"], line["quantity"], line["unit_price"], line["amount"]) for line in invoice["lines"]
    ]


def totals(invoice):
    return invoice["period_start"], invoice["period_end"], invoice["net"], invoice["vat"], invoice["total"]


def test_example_a_24_months_from_mid_january(tmp_path):
    result = quote(
        {
            "term_months": 24,
            "go_live": "2026-01-15",
            "users": [["2026-01-15", 20], ["2026-02-01", 25]],
            "until": "2026-06-30",
        },
        tmp_path,
    )
    assert result["term_months"] == 24
    assert result["binding_end"] == "2028-01-14"
    assert result["termination"] is None
    q1, q2 = result["invoices"]
    assert lines(q1) == [
        ("setup", None, "1.00", "4000.00", "4000.00"),
        ("subscription", "2026-01", "10.97", "11.00", "120.67"),
        ("subscription", "2026-02", "25.00", "11.00", "275.00"),
        ("subscription", "2026-03", "25.00", "11.00", "275.00"),
    ]
    assert totals(q1) == ("2026-01-15", "2026-03-31", "4670.67", "1167.67", "5838.34")
    assert totals(q2) == ("2026-04-01", "2026-06-30", "825.00", "206.25", "1031.25")


def test_example_b_36_months_below_the_minimum_with_notice(tmp_path):
    result = quote(
        {"term_months": 36, "go_live": "2026-03-01", "users": [["2026-03-01", 8]], "notice_received": "2026-10-12"},
        tmp_path,
    )
    assert result["binding_end"] == "2029-02-28"
    assert result["termination"] == {
        "notice_received": "2026-10-12",
        "effective_end": "2026-10-31",
        "average_users": "8.0000",
        "remaining_months": "28.0000",
        "fee": "3360.00",
    }
    for invoice in result["invoices"]:
        for kind, _month, quantity, unit_price, amount in lines(invoice):
            if kind == "subscription":
                assert (quantity, amount) == ("8.00", "80.00")
            if kind == "minimum":
                assert (quantity, unit_price, amount) == ("1.00", "120.00", "120.00")
    last = result["invoices"][-1]
    assert lines(last) == [
        ("subscription", "2026-10", "8.00", "10.00", "80.00"),
        ("minimum", "2026-10", "1.00", "120.00", "120.00"),
        ("termination_fee", None, "1.00", "3360.00", "3360.00"),
    ]
    assert totals(last) == ("2026-10-01", "2026-10-31", "3560.00", "890.00", "4450.00")


def test_example_c_12_months_notice_within_the_term(tmp_path):
    result = quote(
        {
            "term_months": 12,
            "go_live": "2025-02-10",
            "users": [["2025-02-10", 40], ["2025-03-15", 45], ["2025-06-01", 12]],
            "notice_received": "2025-08-20",
        },
        tmp_path,
    )
    assert result["binding_end"] == "2026-02-09"
    assert result["termination"] == {
        "notice_received": "2025-08-20",
        "effective_end": "2025-11-30",
        "average_users": "30.3141",
        "remaining_months": "2.3214",
        "fee": "506.68",
    }
    first = result["invoices"][0]
    assert lines(first)[:2] == [
        ("setup", None, "1.00", "5000.00", "5000.00"),
        ("subscription", "2025-02", "27.14", "12.00", "325.68"),
    ]
    monthly = {line[1]: line for invoice in result["invoices"] for line in lines(invoice)}
    for month in ("2025-06", "2025-07", "2025-08", "2025-09", "2025-10", "2025-11"):
        subscription = [line for inv in result["invoices"] for line in lines(inv) if line[1] == month]
        assert subscription == [
            ("subscription", month, "12.00", "12.00", "144.00"),
            ("minimum", month, "1.00", "56.00", "56.00"),
        ], month
    assert monthly["2025-11"]
    assert result["invoices"][-1]["period_end"] == "2025-11-30"
    assert lines(result["invoices"][-1])[-1] == ("termination_fee", None, "1.00", "506.68", "506.68")


def test_example_d_no_term_no_fee(tmp_path):
    result = quote(
        {"term_months": 0, "go_live": "2026-02-01", "users": [["2026-02-01", 30]], "notice_received": "2026-05-05"},
        tmp_path,
    )
    assert result["binding_end"] is None
    assert result["termination"] == {
        "notice_received": "2026-05-05",
        "effective_end": "2026-09-30",
        "average_users": "30.0000",
        "remaining_months": "0.0000",
        "fee": "0.00",
    }
    assert result["invoices"][-1]["period_end"] == "2026-09-30"
    assert all(line[0] != "termination_fee" for inv in result["invoices"] for line in lines(inv))


def test_prices_override_the_price_list_and_until_stops_billing_before_the_effective_end(tmp_path):
    result = quote(
        {
            "term_months": 12,
            "go_live": "2026-01-01",
            "users": [["2026-01-01", 10]],
            "notice_received": "2026-01-20",
            "until": "2026-02-28",
            "prices": {"monthly": "9.50", "setup": "0.00"},
        },
        tmp_path,
    )
    assert result["termination"]["effective_end"] == "2026-04-30"
    (invoice,) = result["invoices"]
    assert invoice["period_end"] == "2026-02-28"
    assert lines(invoice)[0] == ("setup", None, "1.00", "0.00", "0.00")
    assert lines(invoice)[1] == ("subscription", "2026-01", "10.00", "9.50", "95.00")
    assert all(line[0] != "termination_fee" for line in lines(invoice))


def test_a_notice_taking_effect_before_go_live_gives_no_invoice_and_no_fee(tmp_path):
    result = quote(
        {"term_months": 36, "go_live": "2026-05-01", "users": [["2026-05-01", 10]], "notice_received": "2026-03-10"},
        tmp_path,
    )
    assert result["termination"]["effective_end"] == "2026-03-31"
    assert result["termination"]["fee"] == "0.00"
    assert result["invoices"] == []


def run(stdin):
    return subprocess.run(
        [sys.executable, "manage.py", "billing_quote", "-"],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


GOOD = {"term_months": 12, "go_live": "2026-01-01", "users": [["2026-01-01", 5]], "until": "2026-03-31"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"term_months": 6}, "term_months"),
        ({"term_months": None}, "term_months"),
        ({"go_live": "2026-02-30"}, "go_live"),
        ({"go_live": None}, "go_live"),
        ({"until": None}, "until"),
        ({"users": None}, "users"),
        ({"users": [["2026-01-01"]]}, "users[0]"),
        ({"users": [["2026-01-01", -1]]}, "users[0][1]"),
        ({"users": [["jan", 3]]}, "users[0][0]"),
        ({"notice_received": "snart"}, "notice_received"),
        ({"prices": {"monthly": "tolv"}}, "prices.monthly"),
        ({"until": "9999-12-31"}, "until"),
        ({"go_live": "0001-01-01"}, "go_live"),
        ({"notice_received": "9999-12-31"}, "notice_received"),
        ({"users": [["2026-01-01", 5], ["9999-01-01", 3]]}, "users[1][0]"),
        ({"users": [["2026-01-01", 10**30]]}, "users[0][1]"),
        ({"prices": {"hourly": "12.00"}}, "prices.hourly"),
        ({"prices": {"monthly": "12.00", "setup": "0.00", "hourly": "1.00"}}, "prices.hourly"),
        ({"prices": {"monthly": "1e30"}}, "prices.monthly"),
        ({"notice": "2026-02-01"}, "notice"),
    ],
)
def test_bad_input_exits_non_zero_with_one_line_naming_the_field(change, field):
    payload = {key: value for key, value in {**GOOD, **change}.items() if value is not None}
    result = run(json.dumps(payload))
    assert result.returncode != 0
    lines_ = result.stderr.strip().splitlines()
    assert len(lines_) == 1 and field in lines_[0], result.stderr


def test_invalid_json_is_reported():
    result = run("{")
    assert result.returncode != 0 and "invalid JSON" in result.stderr


def test_input_nested_too_deeply_is_reported_on_one_line():
    result = run("[" * 5000 + "]" * 5000)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["CommandError: input: invalid JSON: nested more than 64 levels deep"]
