"""Admin for the absence-profile catalogue."""

from django.contrib import admin

from sync.models import AbsenceProfile


@admin.register(AbsenceProfile)
class AbsenceProfileAdmin(admin.ModelAdmin):
    list_display = ["short_code", "full_name", "profile", "mbn_reason", "position"]
    list_editable = ["position"]
    search_fields = ["short_code", "full_name", "profile", "mbn_reason"]
    ordering = ["position", "full_name"]
