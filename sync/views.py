"""Webhooks Microsoft Graph calls: change and lifecycle notifications.

They answer within milliseconds: a valid notification only marks the user as changed and queues a sync
after commit; nothing syncs inline. Graph puts several subscriptions' notifications in one POST and
retries the whole POST on any non-2xx answer, so each notification is judged on its own: those without a
known subscription's clientState are logged and ignored, and the POST is answered 202 when at least one
was valid (4xx with no side effect when none was).
"""

import logging
import secrets
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseForbidden
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from common.json_input import JSONInputError, parse_json
from common.queue import enqueue
from sync.models import CalendarUser
from sync.services import queue_syncs
from sync.work import RENEW_SUBSCRIPTIONS

logger = logging.getLogger(__name__)


def _plain_id(value: Any) -> str | None:
    """A subscription or channel id as the services make them (short, printable), else None.

    Anything else cannot match a user, and is not sent to the database (PostgreSQL refuses NUL).
    """
    if not isinstance(value, str) or not 0 < len(value) <= 200 or not value.isprintable():
        return None
    return value


def _same_secret(given: Any, expected: str) -> bool:
    """A constant-time comparison of a clientState or channel token with the one we stored."""
    if not isinstance(given, str) or not expected:
        return False
    return secrets.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8"))


def _notifications(request: HttpRequest) -> tuple[list[tuple[CalendarUser, dict]], HttpResponse | None]:  # type: ignore[type-arg]
    """A Graph POST's notifications that are ours (user, item), or the answer to give instead: the subscription's
    validation handshake (the token echoed as plain text), a bad request, or a refusal when none is ours."""
    token = request.GET.get("validationToken")
    if token is not None:
        return [], HttpResponse(token, content_type="text/plain")
    try:
        payload = parse_json(request.body)
    except JSONInputError:
        payload = None
    items = payload.get("value") if isinstance(payload, dict) else None
    if not isinstance(items, list):
        return [], HttpResponseBadRequest('expected a Graph notification: {"value": [...]}')
    ids = {_plain_id(item.get("subscriptionId")) if isinstance(item, dict) else None for item in items} - {None}
    users = {u.subscription_id: u for u in CalendarUser.objects.filter(subscription_id__in=ids)}
    valid = []
    for item in items:
        user = users.get(_plain_id(item.get("subscriptionId")) or "") if isinstance(item, dict) else None
        if user is None or not _same_secret(item.get("clientState"), user.client_state):
            continue  # forged, or from a subscription we no longer hold (deleted, never stored): ignored
        valid.append((user, item))
    if len(valid) < len(items):
        logger.warning(
            "ignored %d of %d Graph notification(s) with an unknown subscription or wrong clientState",
            len(items) - len(valid),
            len(items),
        )
    if items and not valid:
        return [], HttpResponseForbidden("unknown subscription or wrong clientState")
    return valid, None


@csrf_exempt
@require_POST
def graph_webhook(request: HttpRequest) -> HttpResponse:
    valid, answer = _notifications(request)
    if answer is not None:
        return answer
    queue_syncs(calendar_user_ids={user.pk for user, _item in valid})
    return HttpResponse(status=202)


@csrf_exempt
@require_POST
def graph_lifecycle(request: HttpRequest) -> HttpResponse:
    valid, answer = _notifications(request)
    if answer is not None:
        return answer
    removed = {user.subscription_id for user, item in valid if item.get("lifecycleEvent") == "subscriptionRemoved"}
    reauthorize = {user.pk for user, item in valid if item.get("lifecycleEvent") == "reauthorizationRequired"}
    if removed:  # Graph no longer has it: forget it (unless replaced already), so the renewal job makes a new one
        CalendarUser.objects.filter(subscription_id__in=removed).update(
            subscription_id="", subscription_expires=None, client_state=""
        )
        reauthorize -= {user.pk for user, _item in valid if user.subscription_id in removed}
    if reauthorize:  # renewing reauthorizes too
        CalendarUser.objects.filter(pk__in=reauthorize).update(subscription_expires=timezone.now())
    if removed or reauthorize:  # the renewal job subscribes again / renews at once
        enqueue(RENEW_SUBSCRIPTIONS, name="renew-graph-subscriptions")
    # "missed" and the others: sync now; the delta read catches up on whatever the lost notifications said
    queue_syncs(calendar_user_ids={user.pk for user, _item in valid})
    return HttpResponse(status=202)


@csrf_exempt
@require_POST
def google_webhook(request: HttpRequest) -> HttpResponse:
    """Google Calendar watch channels: the channel id and its token must match a user's channel."""
    channel = request.headers.get("X-Goog-Channel-ID", "")
    if not channel:
        return HttpResponseBadRequest("expected a Google Calendar push notification")
    plain_channel = _plain_id(channel)
    user = None
    if plain_channel is not None:
        user = CalendarUser.objects.filter(subscription_id__startswith=f"{plain_channel}|").first()
    if user is None or not _same_secret(request.headers.get("X-Goog-Channel-Token"), user.client_state):
        logger.warning("refused a Google notification with an unknown channel or wrong token")
        return HttpResponseForbidden("unknown channel or wrong token")
    if request.headers.get("X-Goog-Resource-State") != "sync":  # "sync" only confirms the channel
        queue_syncs(calendar_user_ids={user.pk})
    return HttpResponse(status=200)
