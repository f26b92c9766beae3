"""The customer portal's pages. Every view gets the customer from the login's membership and reads
through it, so an id from another customer is simply not found (404)."""

import functools
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse, reverse_lazy
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from billing.exports import ExportedDocument
from billing.services import document_for_credit_note, document_for_invoice, termination_for
from common.formatting import format_number
from customers.models import Customer, ServiceUser, Subscription
from customers.services import ensure_customer_settings
from portal import forms, selectors, services, timeline
from portal.models import PortalMembership
from portal.preview import preview_subject
from sync import connections as sync_connections
from sync.connections import ConnectionProblem, ConnectionTestResult
from sync.models import AbsenceProfile, CalendarSource

TIMELINE_DAYS = 7
USERS_PER_PAGE = 50

View = Callable[..., HttpResponse]


def portal_page(*, admin_only: bool = True) -> Callable[[View], View]:
    """Log-in required; the login's customer is passed to the view; accountants only where allowed."""

    def decorator(view: View) -> View:
        @login_required
        @functools.wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            membership = (
                PortalMembership.objects.select_related("customer").filter(user_id=request.user.pk or 0).first()
            )
            if membership is None:
                return forbidden(request, _("This login has no access to the customer portal."))
            request.portal_membership = membership  # type: ignore[attr-defined]
            if admin_only and not membership.is_admin:
                return forbidden(request, _("Your role (accountant) gives access to invoices only."))
            try:
                return view(request, membership.customer, *args, **kwargs)
            except PermissionDenied as refusal:
                return forbidden(request, str(refusal))

        return wrapped

    return decorator


# --- login, password ------------------------------------------------------------------------------


class LoginView(auth_views.LoginView):
    template_name = "portal/login.html"
    form_class = forms.PortalLoginForm
    redirect_authenticated_user = False


class PasswordResetView(auth_views.PasswordResetView):
    form_class = forms.PortalPasswordResetForm
    template_name = "portal/password_reset.html"
    email_template_name = "portal/email/password_reset.txt"
    subject_template_name = "portal/email/password_reset_subject.txt"
    success_url = reverse_lazy("portal:password_reset_done")


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "portal/password_reset_confirm.html"
    success_url = reverse_lazy("portal:password_reset_complete")

    def get_user(self, uidb64: str) -> Any:
        """Only a portal login's link works here; for staff it is an invalid link, whatever its token."""
        user = super().get_user(uidb64)
        return user if user is not None and selectors.portal_logins().filter(pk=user.pk).exists() else None


# --- pages ----------------------------------------------------------------------------------------


@require_GET
@portal_page(admin_only=False)
def overview(request: HttpRequest, customer: Customer) -> HttpResponse:
    if not request.portal_membership.is_admin:  # type: ignore[attr-defined]
        return redirect("portal:invoices")
    data = selectors.overview(customer, today=timezone.localdate())
    return render(request, "portal/overview.html", {"customer": customer, "overview": data})


SEARCH_MAX_LENGTH = 254


@require_GET
@portal_page()
def users(request: HttpRequest, customer: Customer) -> HttpResponse:
    show = request.GET.get("vis", "alle")
    show = show if show in selectors.USER_FILTERS else "alle"
    # No name, e-mail or number has a NUL (PostgreSQL refuses it) or is longer than an e-mail address may be.
    search = request.GET.get("q", "").replace("\x00", "").strip()[:SEARCH_MAX_LENGTH]
    page = Paginator(selectors.service_users(customer, show=show, search=search), USERS_PER_PAGE).get_page(
        request.GET.get("side")
    )
    counts = selectors.user_counts(customer)
    customer_settings = ensure_customer_settings(customer=customer)
    return render(
        request,
        "portal/users.html",
        {
            "customer": customer,
            "page": page,
            "show": show,
            "search": search,
            "counts": counts,
            "company_profile": customer_settings.default_profile,
            "company_divert": customer_settings.divert_by_default,
            "has_mbn": selectors.has_mbn_connection(customer),
        },
    )


@require_http_methods(["GET", "POST"])
@portal_page()
def user_detail(request: HttpRequest, customer: Customer, pk: int) -> HttpResponse:
    service_user = get_object_or_404(ServiceUser.objects.filter(customer=customer), pk=pk)
    customer_settings = ensure_customer_settings(customer=customer)
    number_posted = request.method == "POST" and request.POST.get("action") == "number"
    form = forms.OverridesForm(
        request.POST if request.method == "POST" and not number_posted else None,
        instance=service_user,
        company_profile=str(customer_settings.default_profile),
    )
    if request.method == "POST" and not number_posted and form.is_valid():
        services.save_user_overrides(service_user=form.save(commit=False))
        messages.success(request, _("Saved. The calendar is synced again within a minute."))
        return redirect("portal:user", pk=service_user.pk)
    number_form = forms.MobileNumberForm(
        request.POST if number_posted else None, initial={"msisdn": service_user.msisdn}
    )
    if number_posted and number_form.is_valid():
        try:
            saved = services.set_mobile_number(
                service_user=service_user, msisdn=number_form.cleaned_data["msisdn"], changed_by=request.user
            )
        except ValidationError as refusal:
            service_user.refresh_from_db()
            number_form.add_error("msisdn", refusal.messages)
        else:
            messages.success(request, _number_message(saved, service_user))
            return redirect("portal:user", pk=service_user.pk)
    now = timezone.now()
    absences = selectors.upcoming_absences(service_user, now=now, days=TIMELINE_DAYS)
    profiles = list(AbsenceProfile.objects.order_by("position", "full_name").values_list("profile", flat=True))
    colour_of = timeline.colours(profiles)
    first_day = timezone.localtime(now).date()
    return render(
        request,
        "portal/user_detail.html",
        {
            "customer": customer,
            "service_user": service_user,
            "calendar": getattr(service_user, "calendar", None),
            "problem": selectors.user_problem(service_user, has_mbn=selectors.has_mbn_connection(customer)),
            "form": form,
            "number_form": number_form,
            "absences": absences,
            "legend": [(name, colour_of[name]) for name in profiles if any(a.profile == name for a in absences)],
            "picture": timeline.render(absences, first_day=first_day, days=TIMELINE_DAYS, colour_of=colour_of),
            "days": TIMELINE_DAYS,
        },
    )


def _number_message(saved: services.NumberSaved, service_user: ServiceUser) -> str:
    number = service_user.msisdn
    return {
        services.NumberSaved.UNCHANGED: _("The number is unchanged."),
        services.NumberSaved.FOUND_IN_MBN: _(
            "Saved. %(number)s is a subscriber in your company's Telenor MBN; the appointments reach it within a "
            "minute."
        )
        % {"number": number},
        services.NumberSaved.NOT_CHECKED: _(
            "Saved. %(number)s is checked against Telenor MBN once your company's MBN access is set up."
        )
        % {"number": number},
        services.NumberSaved.REMOVED: _(
            "The number was removed. Within an hour the user is matched to MBN by e-mail address again, if a "
            "subscriber has it."
        ),
    }[saved]


@require_http_methods(["GET", "POST"])
@portal_page()
def settings_page(request: HttpRequest, customer: Customer) -> HttpResponse:
    customer_settings = ensure_customer_settings(customer=customer)
    form = forms.SettingsForm(request.POST if request.method == "POST" else None, instance=customer_settings)
    if request.method == "POST":
        if form.is_valid():
            count = services.save_settings(customer_settings=form.save(commit=False))
            messages.success(
                request,
                _("Saved. %(count)s calendars are synced again with the new settings within a few minutes.")
                % {"count": count},
            )
            return redirect("portal:settings")
        messages.error(request, _("The settings were not saved. Correct the fields marked below."))
    return render(
        request,
        "portal/settings.html",
        {"customer": customer, "form": form, "changes": selectors.settings_changes(customer_settings)},
    )


@require_GET
@portal_page()
def codes(request: HttpRequest, customer: Customer) -> HttpResponse:
    customer_settings = ensure_customer_settings(customer=customer)
    data = request.GET if "subject" in request.GET else forms.TrySubjectForm.example(now=timezone.now())
    form = forms.TrySubjectForm(data)
    result = None
    if form.is_valid():
        result = preview_subject(customer_settings=customer_settings, **form.cleaned_data)
    context = {
        "customer": customer,
        "form": form,
        "result": result,
        "profiles": AbsenceProfile.objects.order_by("position", "full_name"),
        "settings": customer_settings,
    }
    if request.headers.get("X-Requested-With") == "fetch":
        return render(request, "portal/_preview_result.html", context)
    return render(request, "portal/codes.html", context)


def _subscription_or_404(customer: Customer) -> Subscription:
    subscription = selectors.current_subscription(customer)
    if subscription is None:
        raise PermissionDenied(_("There is no subscription for this customer yet."))
    return subscription


@require_GET
@portal_page()
def subscription(request: HttpRequest, customer: Customer) -> HttpResponse:
    current = _subscription_or_404(customer)
    today = timezone.localdate()
    form = forms.NoticeDateForm(request.GET if "notice" in request.GET else {"notice": today.isoformat()})
    calculation = None
    if current.status == Subscription.Status.LIVE and form.is_valid():
        notice = form.cleaned_data["notice"]
        if notice < today:
            form.add_error("notice", _("A notice cannot be given in the past."))
        else:
            calculation = termination_for(current, notice_received=notice)
    return render(
        request,
        "portal/subscription.html",
        {
            "customer": customer,
            "subscription": current,
            "form": form,
            "calculation": calculation,
            "termination": termination_for(current) if current.notice_received and current.go_live else None,
            "can_terminate": current.status in (Subscription.Status.LIVE, Subscription.Status.PENDING),
        },
    )


@require_http_methods(["GET", "POST"])
@portal_page()
def terminate(request: HttpRequest, customer: Customer) -> HttpResponse:
    current = _subscription_or_404(customer)
    if current.status not in (Subscription.Status.LIVE, Subscription.Status.PENDING):
        messages.info(request, _("The subscription has already been terminated."))
        return redirect("portal:subscription")
    today = timezone.localdate()
    form = forms.TerminationForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            result = services.request_termination(subscription=current, requested_by=request.user, today=today)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            current.refresh_from_db()
            return render(
                request, "portal/terminated.html", {"customer": customer, "subscription": current, "result": result}
            )
    calculation = termination_for(current, notice_received=today) if current.go_live else None
    return render(
        request,
        "portal/terminate.html",
        {"customer": customer, "subscription": current, "form": form, "calculation": calculation, "today": today},
    )


@require_GET
@portal_page(admin_only=False)
def invoices(request: HttpRequest, customer: Customer) -> HttpResponse:
    page = Paginator(selectors.invoices(customer), 25).get_page(request.GET.get("side"))
    return render(
        request,
        "portal/invoices.html",
        {"customer": customer, "page": page, "credit_notes": selectors.credit_notes(customer)[:25]},
    )


@require_GET
@portal_page(admin_only=False)
def invoice_pdf(request: HttpRequest, customer: Customer, pk: int) -> HttpResponse:
    invoice = get_object_or_404(selectors.invoices(customer), pk=pk)
    return ExportedDocument(document_for_invoice(invoice)).pdf_download()


@require_GET
@portal_page(admin_only=False)
def invoice_ehf(request: HttpRequest, customer: Customer, pk: int) -> HttpResponse:
    invoice = get_object_or_404(selectors.invoices(customer), pk=pk)
    return ExportedDocument(document_for_invoice(invoice)).ehf_download()


@require_GET
@portal_page(admin_only=False)
def credit_note_pdf(request: HttpRequest, customer: Customer, pk: int) -> HttpResponse:
    note = get_object_or_404(selectors.credit_notes(customer), pk=pk)
    return ExportedDocument(document_for_credit_note(note)).pdf_download()


@require_GET
@portal_page(admin_only=False)
def credit_note_ehf(request: HttpRequest, customer: Customer, pk: int) -> HttpResponse:
    note = get_object_or_404(selectors.credit_notes(customer), pk=pk)
    return ExportedDocument(document_for_credit_note(note)).ehf_download()


# --- connections ----------------------------------------------------------------------------------
# The IT admin connects the calendar system and Telenor MBN here; sync.connections does the work (each step
# tested and audited, nothing saved half-done) and words what went wrong. Secrets are never shown again.


@require_GET
@portal_page()
def connections(request: HttpRequest, customer: Customer) -> HttpResponse:
    return render(
        request,
        "portal/connections.html",
        {
            "customer": customer,
            "connections": sync_connections.customer_connections(customer=customer),
            "events": sync_connections.connection_events(customer=customer, limit=50),
        },
    )


@require_POST
@portal_page()
def connection_test(request: HttpRequest, customer: Customer) -> HttpResponse:
    """ "Test again": test one connection now and say how it went."""
    form = forms.ConnectionTestForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Choose a connection to test."))
        return redirect("portal:connections")
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
        _report_result(request, result)
    return redirect(f"{reverse('portal:connections')}#{form.cleaned_data['connection']}")


@require_POST
@portal_page()
def connection_remove(request: HttpRequest, customer: Customer) -> HttpResponse:
    """ "Koble fra": disconnect one connection (after the confirmation on its card) and say what follows."""
    form = forms.ConnectionTestForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Choose a connection to disconnect."))
        return redirect("portal:connections")
    connection = form.cleaned_data["connection"]
    try:
        sync_connections.remove_connection(
            customer=customer, connection=connection, user=request.user, source_id=form.cleaned_data["source"]
        )
    except ConnectionProblem as problem:
        messages.error(request, f"{problem.what} {problem.what_to_do}")
    else:
        messages.success(request, sync_connections.removed_words(connection))
    return redirect(f"{reverse('portal:connections')}#{connection}")


def _report_result(request: HttpRequest, result: ConnectionTestResult) -> None:
    if result.ok:
        messages.success(request, _("The connection works.") + " " + _details_sentence(result.details))
    else:
        messages.error(request, _("The test failed.") + f" {result.what} {result.what_to_do}")


def _details_sentence(details: dict[str, Any]) -> str:
    """What a passed test found, in words: the group and its members, or the MBN subscribers matched."""
    if "matched" in details:
        unmatched = len(details.get("unmatched") or [])
        return _(
            "%(matched)s of your users were found in Telenor MBN; %(unmatched)s were not (listed under Telenor MBN)."
        ) % {"matched": format_number(details["matched"], 0), "unmatched": format_number(unmatched, 0)}
    if "group_name" in details:
        return _("The group “%(group)s” has %(members)s members.") % {
            "group": details["group_name"],
            "members": format_number(details.get("members", 0), 0),
        }
    return ""


def _consent_redirect_uri() -> str:
    """Where Microsoft sends the administrator back: the public address, as registered in Nettsoft's app."""
    return settings.PUBLIC_BASE_URL.rstrip("/") + reverse("portal:microsoft_callback")


@require_POST
@portal_page()
def microsoft_connect(request: HttpRequest, customer: Customer) -> HttpResponse:
    """ "Connect Microsoft 365": off to Microsoft, where an administrator of the tenant grants Nettsoft's app."""
    if request.session.session_key is None:
        request.session.save()  # the consent is bound to this session
    try:
        url = sync_connections.microsoft_consent_url(
            customer=customer,
            user=request.user,
            session_key=request.session.session_key or "",
            redirect_uri=_consent_redirect_uri(),
        )
    except ConnectionProblem as problem:
        return render(request, "portal/connection_problem.html", {"customer": customer, "problem": problem})
    return redirect(url)


@require_GET
@portal_page()
def microsoft_callback(request: HttpRequest, customer: Customer) -> HttpResponse:
    """Microsoft's answer: the consent given (then on to the group), or refused or not to be trusted (why, and
    what to do, with a button to try again)."""
    try:
        source = sync_connections.finish_microsoft_consent(
            customer=customer,
            user=request.user,
            session_key=request.session.session_key or "",
            query=request.GET.dict(),
        )
    except ConnectionProblem as problem:
        return render(request, "portal/connection_problem.html", {"customer": customer, "problem": problem})
    messages.success(
        request, _("Microsoft 365 gave Kalender Push access. Now choose the group whose members get the service.")
    )
    return redirect("portal:microsoft_group", pk=source.pk)


@require_http_methods(["GET", "POST"])
@portal_page()
def microsoft_group(request: HttpRequest, customer: Customer, pk: int) -> HttpResponse:
    """Search the tenant's groups and choose the activation group; choosing tests the connection."""
    sources = CalendarSource.objects.filter(customer=customer, kind=CalendarSource.Kind.GRAPH, removed_at__isnull=True)
    source = get_object_or_404(sources, pk=pk)
    choice = forms.GroupChoiceForm(request.POST if request.method == "POST" else None)
    query = (choice.data.get("q") if choice.is_bound else request.GET.get("q")) or ""
    search = forms.GroupSearchForm({"q": query} if query else None)
    problem: ConnectionProblem | ConnectionTestResult | None = None
    if choice.is_valid():
        try:
            result = sync_connections.choose_group(
                source=source, group_id=choice.cleaned_data["group"], user=request.user
            )
        except ConnectionProblem as refusal:
            problem = refusal
        else:
            if result.ok:
                messages.success(
                    request,
                    _("Microsoft 365 works.")
                    + " "
                    + _details_sentence(result.details)
                    + " "
                    + _("The first sync has started: the users appear under Users within a few minutes."),
                )
                return redirect(f"{reverse('portal:connections')}#microsoft365")
            problem = result
    groups: list[Any] = []
    if search.is_valid():
        try:
            groups = sync_connections.search_groups(source=source, query=search.cleaned_data["q"])
        except ConnectionProblem as refusal:
            problem = problem or refusal
    return render(
        request,
        "portal/connection_group.html",
        {
            "customer": customer,
            "source": source,
            "search": search,
            "choice": choice,
            "groups": groups,
            "searched": search.is_valid(),
            "problem": problem,
        },
    )


def _connection_form_page(
    request: HttpRequest,
    customer: Customer,
    *,
    connection: str,
    form_class: type[forms.ConnectionForm],
    save: Callable[..., ConnectionTestResult],
    template: str,
    context: dict[str, Any] | None = None,
) -> HttpResponse:
    """One connection's form: shown with what is stored (never a secret), saved and tested by `save`; a
    problem is shown at its field with the input kept, the passwords excepted."""
    status = _status_of(customer, connection)
    stored = status.state != "not_connected"
    initial = {name: value for name, value in status.values.items() if name in form_class.base_fields}
    form = form_class(
        request.POST if request.method == "POST" else None, initial=initial, secret_stored=status.has_secret
    )
    if request.method == "POST" and form.is_valid():
        if stored and form.changes_nothing():
            messages.info(request, _("Nothing was changed. Use “Test again” to test the connection."))
            return redirect(f"{reverse('portal:connections')}#{connection}")
        try:
            result = save(customer=customer, user=request.user, **form.cleaned_data)
        except ConnectionProblem as problem:
            form.show_problem(field=problem.field, what=problem.what, what_to_do=problem.what_to_do)
        else:
            messages.success(
                request, _("Saved and tested: the connection works.") + " " + _details_sentence(result.details)
            )
            return redirect(f"{reverse('portal:connections')}#{connection}")
    return render(request, template, {"customer": customer, "form": form, "status": status, **(context or {})})


def _status_of(customer: Customer, connection: str) -> sync_connections.ConnectionStatus:
    return next(c for c in sync_connections.customer_connections(customer=customer) if c.connection == connection)


@require_http_methods(["GET", "POST"])
@portal_page()
def google_connection(request: HttpRequest, customer: Customer) -> HttpResponse:
    return _connection_form_page(
        request,
        customer,
        connection="google",
        form_class=forms.GoogleConnectionForm,
        save=sync_connections.save_google,
        template="portal/connection_google.html",
        context={"setup": sync_connections.google_setup_info()},
    )


@require_http_methods(["GET", "POST"])
@portal_page()
def exchange_connection(request: HttpRequest, customer: Customer) -> HttpResponse:
    return _connection_form_page(
        request,
        customer,
        connection="ews",
        form_class=forms.ExchangeConnectionForm,
        save=sync_connections.save_ews,
        template="portal/connection_exchange.html",
    )


@require_http_methods(["GET", "POST"])
@portal_page()
def mbn_connection(request: HttpRequest, customer: Customer) -> HttpResponse:
    return _connection_form_page(
        request,
        customer,
        connection="mbn",
        form_class=forms.MbnConnectionForm,
        save=sync_connections.save_mbn,
        template="portal/connection_mbn.html",
    )


def forbidden(request: HttpRequest, reason: str) -> HttpResponse:
    """403 page in the portal's look, with the reason (a wrong role, no portal access)."""
    return render(
        request, "portal/403.html", {"reason": reason or _("You do not have access to this page.")}, status=403
    )
