"""Error pages (400, 403, 404, 500 and a refused CSRF check) in Norwegian, in the look of the site they belong to.

Under /portal/ they wear the portal's look, under /admin/ the admin's, anywhere else (webhooks, /) a plain
page. The 400 and 500 pages render without the request: no context processors, no session, no database,
since what failed may be exactly one of those; a 500 page that cannot render at all falls back to fixed HTML.
"""

import logging

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template import loader
from django.utils.html import escape
from django.utils.translation import gettext

logger = logging.getLogger(__name__)

PORTAL_PREFIX = "/portal/"
ADMIN_PREFIX = "/admin/"


def _template_for(path: str) -> str:
    if path.startswith(PORTAL_PREFIX):
        return "portal/error.html"
    if path.startswith(ADMIN_PREFIX):
        return "admin/error.html"
    return "error.html"


def _render(
    request: HttpRequest, *, status: int, title: str, message: str, detail: str = "", with_request: bool
) -> HttpResponse:
    template = _template_for(request.path)
    context = {
        "status": status,
        "title": title,
        "message": message,
        "detail": detail,
        "site_header": admin.site.site_header,
        "site_title": admin.site.site_title,
    }
    if with_request and template.startswith("admin/"):
        context = {**admin.site.each_context(request), **context}
    body = loader.get_template(template).render(context, request if with_request else None)
    return HttpResponse(body, status=status)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _render(
        request,
        status=400,
        title=gettext("Bad request"),
        message=gettext(
            "The address or the form could not be understood. Go back and try again; "
            "if it keeps happening, contact Nettsoft's customer service."
        ),
        with_request=False,
    )


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _render(
        request,
        status=403,
        title=gettext("No access"),
        message=gettext("You do not have access to this page."),
        with_request=True,
    )


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _render(
        request,
        status=404,
        title=gettext("Page not found"),
        message=gettext(
            "The page does not exist, or it has moved. Check the address, or start again from the front page."
        ),
        with_request=True,
    )


def server_error(request: HttpRequest) -> HttpResponse:
    title = gettext("Something went wrong")
    message = gettext(
        "An error on our side stopped this page, and it has been logged. Try again in a few minutes; "
        "if it keeps happening, contact Nettsoft's customer service."
    )
    try:
        return _render(request, status=500, title=title, message=message, with_request=False)
    except Exception:  # the page for when everything else failed must not fail itself
        logger.exception("The 500 page could not be rendered; answering with the fixed page")
        html = f"<!DOCTYPE html><title>{escape(title)}</title><h1>{escape(title)}</h1><p>{escape(message)}</p>"
        return HttpResponse(html, status=500)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF_FAILURE_VIEW: a form sent from a page too old, or from a browser that blocks the cookie."""
    return _render(
        request,
        status=403,
        title=gettext("The form could not be sent"),
        message=gettext(
            "For your security, a form is only accepted from a page opened in this browser session. "
            "The page may have been open for a long time, or the browser blocks cookies for this site. "
            "Go back, reload the page and try again."
        ),
        detail=reason if settings.DEBUG else "",
        with_request=True,
    )
