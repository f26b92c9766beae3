"""What deleting sync rows sets off: a deleted calendar user's change subscription is ended at the provider.
And what a change of who is served sets off (`customers.signals.service_users_changed`): users who stop being
served are stopped by a sync, those served again are synced in full, an ended customer's sources and MBN
connection are set inactive.

Deleting the user (in admin, or its service user) leaves the subscription live at Graph or Google until it
expires; a q2 job, queued after commit, deletes it there. When the whole source or customer is deleted, the
credentials go too and the subscription is left to expire (its notifications are refused: no clientState).
"""

from typing import Any

from django.db.models import Model, QuerySet
from django.db.models.signals import post_delete
from django.dispatch import receiver

from common.queue import enqueue
from customers.models import Customer, ServiceUser
from customers.signals import service_users_changed
from sync.models import CalendarSource, CalendarUser, MbnConnection
from sync.services import queue_stops, queue_syncs
from sync.work import UNSUBSCRIBE


@receiver(service_users_changed)
def stop_or_resume_users(
    sender: type[Model],
    customer: Customer,
    stopping: list[int],
    resumed: list[int],
    ended: bool,
    **kwargs: Any,
) -> None:
    if ended:  # no schedule touches them again
        CalendarSource.objects.filter(customer=customer).update(active=False)
        MbnConnection.objects.filter(customer=customer).update(active=False)
    queue_stops(service_user_ids=stopping)
    if resumed:  # a full sync: MBN is read first (a stop cut short may have left some of ours there)
        calendars = CalendarUser.objects.filter(service_user_id__in=resumed)
        calendars.update(mbn_unsure=True)
        queue_syncs(calendar_user_ids=calendars.values_list("pk", flat=True))


@receiver(post_delete, sender=CalendarUser)
def end_subscription_of_deleted_user(
    sender: type[Model], instance: CalendarUser, origin: Any = None, **kwargs: Any
) -> None:
    if not instance.subscription_id:
        return
    deleted = origin.model if isinstance(origin, QuerySet) else type(origin)
    if deleted not in (CalendarUser, ServiceUser):
        return  # the source (and its credentials) is deleted too
    source_id, subscription_id = instance.source_id, instance.subscription_id

    enqueue(UNSUBSCRIBE, source_id, subscription_id, name=f"unsubscribe-{source_id}")
