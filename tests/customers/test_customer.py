"""Customers: organisation numbers, customer numbers, Peppol ids."""

import pytest
from django.core.exceptions import ValidationError

from customers.models import Customer, CustomerNumberCounter
from customers.validators import validate_org_number
from tests.factories import make_customer

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]


@pytest.mark.parametrize("number", ["923609016", "923 609 016", "912345602", "987654325"])
def test_it_accepts_valid_organisation_numbers(number):
    validate_org_number(number)


@pytest.mark.parametrize(
    ("number", "problem"),
    [
        ("923609017", "check digit does not match"),
        ("92360901", "exactly 9 digits"),
        ("9236090166", "exactly 9 digits"),
        ("92360901A", "only contain digits"),
    ],
)
def test_it_rejects_invalid_organisation_numbers_saying_what_is_wrong(number, problem):
    with pytest.raises(ValidationError) as error:
        validate_org_number(number)
    message = error.value.messages[0]
    assert "is not a valid organisation number" in message
    assert problem in message


def test_a_customer_with_a_bad_org_number_is_not_saved():
    with pytest.raises(ValidationError) as error:
        make_customer(org_number="923609017")
    assert "org_number" in error.value.message_dict


def test_org_number_is_stored_compact_and_peppol_id_derived_from_it():
    customer = make_customer(org_number="923 609 016")
    customer.refresh_from_db()
    assert customer.org_number == "923609016"
    assert customer.peppol_participant == "0192:923609016"


def test_a_peppol_id_for_another_scheme_is_kept_but_a_bad_0192_id_is_refused():
    customer = make_customer(peppol_participant="9908:923609016")
    assert customer.peppol_participant == "9908:923609016"
    with pytest.raises(ValidationError) as error:
        make_customer(peppol_participant="0192:923609017")
    assert "must be a valid organisation number" in error.value.message_dict["peppol_participant"][0]


def test_two_customers_cannot_share_an_org_number():
    make_customer(org_number="923609016")
    with pytest.raises(ValidationError) as error:
        make_customer(org_number="923 609 016")
    assert error.value.message_dict["org_number"] == ["A customer with this organisation number already exists."]


def test_customer_numbers_are_sequential_from_10001():
    numbers = [make_customer().customer_number for _ in range(3)]
    assert numbers == [10001, 10002, 10003]


def test_a_deleted_customers_number_is_not_given_again():
    make_customer()
    last = make_customer()
    last.delete()
    assert make_customer().customer_number == 10003
    assert CustomerNumberCounter.objects.get().last_number == 10003


def test_a_number_given_outside_the_counter_is_not_given_again():
    make_customer()
    Customer.objects.bulk_create([Customer(customer_number=10050, name="Importert AS", org_number="923609016")])
    assert make_customer().customer_number == 10051


def test_customer_number_does_not_change_on_save():
    customer = make_customer()
    number = customer.customer_number
    customer.name = "Nytt navn AS"
    customer.save()
    customer.refresh_from_db()
    assert customer.customer_number == number


def test_ehf_needs_a_participant_id():
    with pytest.raises(ValidationError) as error:
        make_customer(send_ehf=True, country_code="SE")
    assert "peppol_participant" in error.value.message_dict
