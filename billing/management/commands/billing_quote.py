"""`billing_quote FILE`: billing.md's scenario in, the invoices and termination the billing run makes out."""

import datetime as dt
import json
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from billing.core.invoicing import PRICES_2019
from billing.core.quote_json import QuoteInputError, run_quote
from common.cli import read_json_argument
from common.typed_dates import TYPED_DATE_RANGE
from customers.models import price_for


def prices_from_price_list(term_months: int, go_live: dt.date) -> tuple[Decimal, Decimal]:
    """The price list in force on go-live; billing.md's 2019 prices where there is no database."""
    try:
        row = price_for(term_months=term_months, on=go_live)
    except ValidationError as error:
        raise QuoteInputError(f'prices: {error.messages[0]} Give "prices" in the input.') from error
    except DatabaseError:
        return PRICES_2019[term_months]
    return row.monthly_price, row.setup_fee


class Command(BaseCommand):
    help = "Computes the quarterly invoices and termination fee of a scenario (billing.md; FILE or -)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", metavar="FILE", help="a JSON scenario as in billing.md, or - for stdin")

    def handle(self, *args: Any, **options: Any) -> None:
        payload = read_json_argument(options["file"])
        try:
            result = run_quote(payload, prices_for=prices_from_price_list, dates=TYPED_DATE_RANGE)
        except QuoteInputError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(json.dumps(result, ensure_ascii=False))
