"""Customers created at the same time on PostgreSQL, from several connections: no collision, no gap."""

import itertools
import threading

import pytest
from django.db import connection

from customers.models import Customer, CustomerNumberCounter
from customers.validators import org_numbers_from

pytestmark = pytest.mark.services
THREADS = 6
ROUNDS = 4


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_customers_created_at_the_same_time_get_consecutive_numbers():
    assert connection.vendor == "postgresql"
    first = Customer(name="Først AS", org_number="923609016", address_line="Gata 1", postal_code="0150", city="Oslo")
    first.save()
    org_numbers = iter(list(itertools.islice(org_numbers_from(81000000), THREADS * ROUNDS)))
    lock = threading.Lock()
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def create_customers(index: int) -> None:
        try:
            for round_ in range(ROUNDS):
                with lock:
                    org_number = next(org_numbers)
                barrier.wait()  # every thread asks for its number at the same moment
                Customer(
                    name=f"Samtidig {index}-{round_} AS",
                    org_number=org_number,
                    address_line="Gata 1",
                    postal_code="0150",
                    city="Oslo",
                    invoice_email="faktura@samtidig.example",
                ).save()
        except BaseException as error:
            errors.append(error)
            barrier.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=create_customers, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert not [error for error in errors if not isinstance(error, threading.BrokenBarrierError)], errors
    numbers = sorted(Customer.objects.values_list("customer_number", flat=True))
    expected = list(range(first.customer_number, first.customer_number + 1 + THREADS * ROUNDS))
    assert numbers == expected, "every customer has its own number, and none is skipped"
    assert CustomerNumberCounter.objects.get().last_number == expected[-1]
