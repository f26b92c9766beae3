"""The staff's page of a customer's connections in admin: the same states, tests and audit as the customer's
"Tilkoblinger" page in the portal. Staff test and read here; giving consent stays the customer's own action."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext
from django.views.decorators.http import require_GET, require_POST

from customers.models import Customer
from portal.forms import ConnectionTestForm
from sync import connections as sync_connections
from sync.connections import ConnectionProblem

EVENTS_SHOWN = 100


def _customer(pk: int) -> Customer:
    try:
        return get_object_or_404(Customer, pk=pk)
    except OverflowError:  # an id beyond any database's integers names no customer
        raise Http404 from None


@require_GET
def customer_connections_view(request: HttpRequest, pk: int) -> HttpResponse:
    if not request.user.has_perm("customers.view_customer"):
        raise PermissionDenied
    customer = _customer(pk)
    context = {
        **admin.site.each_context(request),
        "title": gettext("Connections of %(customer)s") % {"customer": customer},
        "opts": Customer._meta,
        "original": customer,
        "connections": sync_connections.customer_connections(customer=customer),
        "events": sync_connections.connection_events(customer=customer, limit=EVENTS_SHOWN),
        "test_url": reverse("admin:customers_customer_connections_test", args=[customer.pk]),
        "remove_url": reverse("admin:customers_customer_connections_remove", args=[customer.pk]),
        "links": {
            "change": reverse("admin:customers_customer_change", args=[customer.pk]),
            "overview": reverse("admin:customers_customer_overview", args=[customer.pk]),
        },
    }
    return TemplateResponse(request, "admin/customers/customer/connections.html", context)


@require_POST
def customer_connection_test_view(request: HttpRequest, pk: int) -> HttpResponse:
    """ "Test again" for staff: the result is stored and audited with the staff member as the actor."""
    customer = _customer(pk)
    if not request.user.has_perm("customers.change_customer"):
        messages.error(request, gettext("Your login may not change customers, so it may not test their connections."))
        return redirect("admin:customers_customer_connections", pk=customer.pk)
    form = ConnectionTestForm(request.POST)
    if not form.is_valid():
        messages.error(request, gettext("Choose a connection to test."))
        return redirect("admin:customers_customer_connections", pk=customer.pk)
    try:
        result = sync_connections.test_connection(
            customer=customer,
            connection=form.cleaned_data["connection"],
            user=request.user,
            source_id=form.cleaned_data["source"],
        )
    except ConnectionProblem as problem:
        messages.error(request, f"{problem.what} {problem.what_to_do}")
    else:
        if result.ok:
            messages.success(request, gettext("The connection works."))
        else:
            messages.error(request, gettext("The test failed.") + f" {result.what} {result.what_to_do}")
    return redirect("admin:customers_customer_connections", pk=customer.pk)


@require_POST
def customer_connection_remove_view(request: HttpRequest, pk: int) -> HttpResponse:
    """ "Koble fra" for staff (e.g. a consent given for the wrong organisation): audited with the staff member."""
    customer = _customer(pk)
    if not request.user.has_perm("customers.change_customer"):
        messages.error(request, gettext("Your login may not change customers, so it may not disconnect them."))
        return redirect("admin:customers_customer_connections", pk=customer.pk)
    form = ConnectionTestForm(request.POST)
    if not form.is_valid():
        messages.error(request, gettext("Choose a connection to disconnect."))
        return redirect("admin:customers_customer_connections", pk=customer.pk)
    try:
        sync_connections.remove_connection(
            customer=customer,
            connection=form.cleaned_data["connection"],
            user=request.user,
            source_id=form.cleaned_data["source"],
        )
    except ConnectionProblem as problem:
        messages.error(request, f"{problem.what} {problem.what_to_do}")
    else:
        messages.success(request, sync_connections.removed_words(form.cleaned_data["connection"]))
    return redirect("admin:customers_customer_connections", pk=customer.pk)
