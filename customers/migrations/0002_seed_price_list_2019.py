"""Seeds the price list of 1 January 2019 (billing.md; all prices ex. VAT)."""

import datetime as dt
from decimal import Decimal

from django.db import migrations

PRICES = {  # term_months: (per user per month, setup fee)
    0: (Decimal("15.00"), Decimal("7500.00")),
    12: (Decimal("12.00"), Decimal("5000.00")),
    24: (Decimal("11.00"), Decimal("4000.00")),
    36: (Decimal("10.00"), Decimal("3000.00")),
}


def seed(apps, schema_editor):
    PriceList = apps.get_model("customers", "PriceList")
    PriceListRow = apps.get_model("customers", "PriceListRow")
    price_list, created = PriceList.objects.get_or_create(
        effective_from=dt.date(2019, 1, 1), defaults={"name": "Priser per 1/1-2019"}
    )
    if created:
        PriceListRow.objects.bulk_create(
            PriceListRow(price_list=price_list, term_months=term, monthly_price=monthly, setup_fee=setup)
            for term, (monthly, setup) in PRICES.items()
        )


def unseed(apps, schema_editor):
    apps.get_model("customers", "PriceList").objects.filter(effective_from=dt.date(2019, 1, 1)).delete()


class Migration(migrations.Migration):
    dependencies = [("customers", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
