"""What deleting sync rows sets off: a deleted calendar user's change subscription is ended at the provider.

Deleting the user (in admin, or its service user) leaves the subscription live at Graph or Google until it
expires; a q2 job, queued after commit, deletes it there. When the whole source or customer is deleted, the
credentials go too and the subscription is left to expire (its notifications are refused: no clientState).
"""

from typing import Any

from django.db.models import Model, QuerySet
from django.db.models.signals import post_delete
from django.dispatch import receiver

from common.queue import enqueue
from customers.models import ServiceUser
from sync.models import CalendarUser
from sync.work import UNSUBSCRIBE


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
