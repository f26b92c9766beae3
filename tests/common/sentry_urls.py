"""A test-only URL configuration: a view that logs and fails with a customer's data at hand, for the scrubber.

The data comes in with the request (as in a webhook), so none of it is in this file's source lines, which
error reports carry."""

import logging

from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

logger = logging.getLogger("sync.webhook_test")


@csrf_exempt
def failing_webhook(request: HttpRequest) -> HttpResponse:
    subject, mailbox, number, secret = (request.POST[name] for name in ("subject", "user", "number", "secret"))
    logger.info("read the calendar of %s (%s)", mailbox, number)
    logger.error("could not push for %s", mailbox, extra={"subject": subject, "client_secret": secret, "who": mailbox})
    raise RuntimeError(f"MBN refused the absence of {mailbox}, token={secret}, subject {subject!r}")


urlpatterns = [path("webhooks/feiler/", failing_webhook)]
