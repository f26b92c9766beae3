"""The response for a file the browser saves: admin's and the portal's downloads (PDF, EHF, CSV, ZIP)."""

from django.http import HttpResponse


def download(content: bytes, filename: str, content_type: str) -> HttpResponse:
    """A file for the browser to save (admin and portal downloads)."""
    response = HttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
