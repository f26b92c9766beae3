"""The MSISDN rule: the ways people type Norwegian mobiles are accepted and stored in one form."""

import pytest
from django.core.exceptions import ValidationError

from customers.models import ServiceUser
from customers.validators import validate_msisdn
from tests.factories import make_customer


@pytest.mark.parametrize("typed", ["912 34 567", "+47 912 34 567", "004791234567", "4791234567", "91234567"])
@pytest.mark.django_db
def test_it_accepts_how_people_type_a_norwegian_mobile_and_stores_it_normalised(typed: str) -> None:
    user = ServiceUser(customer=make_customer(), email="kari@firma.no", msisdn=typed)
    user.full_clean()
    assert user.msisdn == "+4791234567"


@pytest.mark.parametrize("typed", ["22 33 44 55", "+47 22334455", "1234", "ring meg", "+0123456789", "479123456"])
def test_it_rejects_what_is_not_a_mobile_number_and_says_how_one_looks(typed: str) -> None:
    with pytest.raises(ValidationError, match="912 34 567"):
        validate_msisdn(typed)
