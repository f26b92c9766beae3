from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("sync", "0017_nettsoft_tenant_once_and_disconnect")]

    operations = [
        migrations.AddField(
            model_name="calendaruser",
            name="streamed_since",
            field=models.DateTimeField(blank=True, editable=False, null=True, verbose_name="streamed since"),
        ),
        migrations.AddField(
            model_name="calendaruser",
            name="streamed_until",
            field=models.DateTimeField(blank=True, editable=False, null=True, verbose_name="streamed until"),
        ),
    ]
