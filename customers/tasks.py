"""django-q2 jobs for customers (scheduled in admin under Bakgrunnsjobber → Planlagte jobber)."""

from django.utils import timezone

from customers.services import end_subscriptions_past_effective_end


def end_expired_subscriptions() -> str:
    ended = end_subscriptions_past_effective_end(today=timezone.localdate())
    return f"{ended} subscription(s) ended"
