"""The customer number counter: one row, seeded with the highest customer number in use."""

from django.db import migrations, models
from django.db.models import Max

FIRST_CUSTOMER_NUMBER = 10001  # as in customers.models; a migration does not import the models module


def seed(apps, schema_editor):
    Customer = apps.get_model("customers", "Customer")
    CustomerNumberCounter = apps.get_model("customers", "CustomerNumberCounter")
    highest = Customer.objects.aggregate(n=Max("customer_number"))["n"]
    CustomerNumberCounter.objects.create(last_number=highest or FIRST_CUSTOMER_NUMBER - 1)


class Migration(migrations.Migration):
    dependencies = [
        ("customers", "0005_audit_history"),
    ]

    operations = [
        migrations.CreateModel(
            name="CustomerNumberCounter",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("last_number", models.PositiveIntegerField(verbose_name="last customer number")),
            ],
            options={
                "verbose_name": "customer number counter",
                "verbose_name_plural": "customer number counters",
            },
        ),
        migrations.RunPython(seed, migrations.RunPython.noop),
    ]
