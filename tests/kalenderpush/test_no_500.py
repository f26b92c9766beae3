"""No input gives a 500 or costs seconds: every public URL, a sample of admin, and the fixed commands.

The URLs come from walking the resolver, so a new page or webhook is covered the day it is added. Each
is asked anonymously, as a customer's IT admin and as an accountant, by GET with odd query parameters
and by POST with odd bodies: dates from year 0001 to 9999, NUL bytes, lone surrogates, 100 KB strings,
JSON nested 1 000 deep, wrong types. The answer must be below 500 and cost less than a second of this
thread's CPU time. The database refuses NUL in text as PostgreSQL does (SQLite would take it).
The fixed commands get hypothesis-made bad JSON: a result, or a CommandError (exit 1, one line on
stderr), never another exception (a traceback).
"""

import datetime as dt
import io
import json
import re
import time
from collections.abc import Iterator
from urllib.parse import quote, quote_from_bytes

import pytest
from django import forms
from django.contrib import admin
from django.contrib.auth import forms as auth_forms
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DataError, connection
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import portal.forms
from tests.billing.test_quote import GOOD as GOOD_QUOTE
from tests.portal.conftest import Tenant, make_tenant
from tests.sync.test_preview_command import GOOD as GOOD_PREVIEW

pytestmark = pytest.mark.django_db

MAX_WORK_SECONDS = 1.0  # CPU time of the thread that serves one request (the machine's load does not count)
FUZZ = settings(
    max_examples=4,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # no shrinking: the failure names the request
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --- the URLs ------------------------------------------------------------------------------------


def _routes(patterns=None, prefix: str = "") -> Iterator[str]:  # type: ignore[no-untyped-def]
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(entry.pattern).lstrip("^").rstrip("$")
        if isinstance(entry, URLResolver):
            yield from _routes(entry.url_patterns, route)
        elif isinstance(entry, URLPattern):
            yield route


PUBLIC_ROUTES = sorted(route for route in _routes() if not route.startswith("admin/"))
_CONVERTER = re.compile(r"<(?:(\w+):)?(\w+)>")


def _path(route: str, draw=None) -> str:  # type: ignore[no-untyped-def]
    """A concrete path for a route: with `draw`, odd ids and tokens (no object has them); else the first ones."""

    def fill(match: re.Match[str]) -> str:
        if draw is None:
            return "1" if match[1] == "int" else "MQ"
        if match[1] == "int":
            return str(draw(st.sampled_from([0, 10**6, 2**63, 10**30])))
        return quote(draw(st.sampled_from(["MQ", "x", "a-b", "%00", "ø", "9" * 300])), safe="%")

    return "/" + _CONVERTER.sub(fill, route)


# --- odd values ----------------------------------------------------------------------------------

_DAYS = st.dates(dt.date(1, 1, 1), dt.date(9999, 12, 31))
ODD_TEXT = st.one_of(
    _DAYS.map(dt.date.isoformat),
    _DAYS.map(lambda day: f"{day.isoformat()}T23:59"),
    st.sampled_from(["9999-12-31", "0001-01-01", "9999-12-31T23:59", "0001-01-01T00:00", "2100-12-31"]),
    st.text(max_size=40),
    st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3),
    st.sampled_from(["\x00", "a\x00b", "-1", "1e309", "NaN", "true"]),
    st.builds(lambda: "x" * 100_000),
    st.builds(lambda: "[" * 1000 + "]" * 1000),
    st.integers().map(str),
)

# Every field of the portal's forms and the auth forms it uses, and the query parameters its views read.
FIELD_NAMES = sorted(
    {
        name
        for module in (portal.forms, auth_forms)
        for cls in vars(module).values()
        if isinstance(cls, type) and issubclass(cls, forms.BaseForm)
        for name in getattr(cls, "base_fields", {})
    }
    | {"vis", "q", "side", "notice", "subject", "validationToken", "next", "language", "confirm", "preview"}
)


def _encode(text: str) -> str:
    """Percent-encoded as a client would send it; lone surrogates go as the bytes they would be."""
    return quote_from_bytes(text.encode("utf-8", "surrogatepass"))


@st.composite
def query_strings(draw) -> str:  # type: ignore[no-untyped-def]
    names = draw(st.lists(st.one_of(st.sampled_from(FIELD_NAMES), ODD_TEXT), max_size=6))
    return "&".join(f"{_encode(name)}={_encode(draw(ODD_TEXT))}" for name in names)


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | ODD_TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(ODD_TEXT, children, max_size=3),
    max_leaves=8,
)
_NOTIFICATION_KEYS = st.sampled_from(["subscriptionId", "clientState", "lifecycleEvent", "value", "changeType"])


@st.composite
def bodies(draw) -> tuple[bytes, str]:  # type: ignore[no-untyped-def]
    """(body, content type): a form, JSON shaped like a notification or not, or bytes."""
    kind = draw(st.sampled_from(["form", "notification", "json", "deep", "bytes"]))
    if kind == "form":
        return draw(query_strings()).encode(), "application/x-www-form-urlencoded"
    if kind == "notification":
        items = draw(st.lists(st.dictionaries(_NOTIFICATION_KEYS, _JSON_VALUES, max_size=4), max_size=3))
        value = {"value": items}
    elif kind == "json":
        value = draw(_JSON_VALUES)
    elif kind == "deep":
        text = '{"value": ' + "[" * draw(st.integers(60, 5000)) + "]"
        return text.encode(), "application/json"
    else:
        return draw(st.binary(max_size=200)), draw(st.sampled_from(["application/json", "text/plain"]))
    return json.dumps(value).encode("utf-8", "surrogatepass"), "application/json"


# --- the database refuses NUL as PostgreSQL does ---------------------------------------------------


def _refuse_nul(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
    rows = params if many else [params]
    for row in rows or []:
        for value in row.values() if isinstance(row, dict) else row or []:
            if isinstance(value, str) and "\x00" in value:
                raise DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
    return execute(sql, params, many, context)


@pytest.fixture(autouse=True)
def _postgres_like_nul_refusal() -> Iterator[None]:
    with connection.execute_wrapper(_refuse_nul):
        yield


# --- who asks ------------------------------------------------------------------------------------


@pytest.fixture
def tenant(db) -> Tenant:  # type: ignore[no-untyped-def]
    return make_tenant("Fjordkraft Regnskap AS", "fjordkraft.example")


def _identities(tenant: Tenant) -> dict[str, Client]:
    """Fresh clients (a POST to the logout URL must not leave the next request anonymous)."""
    users = {m.role: m.user for m in tenant.customer.portal_memberships.select_related("user")}  # type: ignore[attr-defined]
    clients = {"anonymous": Client()}
    for role, user in users.items():
        clients[role] = Client()
        clients[role].force_login(user)
    return clients


@pytest.fixture
def warm(tenant: Tenant) -> Tenant:
    """Every page asked once: templates compiled, fonts and translations loaded, so what a request costs
    afterwards is the work its input makes (the first PDF of a process alone loads fonts for seconds)."""
    for client in _identities(tenant).values():
        for route in PUBLIC_ROUTES:
            client.get(_path(route))
    return tenant


def _ask(client: Client, method: str, path: str, query: str = "", body: bytes = b"", content_type: str = "") -> int:
    """The status of one request, after checking that it cost under a second of CPU time."""
    started = time.thread_time()
    if method == "GET":
        response = client.get(path, QUERY_STRING=query)
    else:
        response = client.post(path, body, content_type=content_type, QUERY_STRING=query)
    work = time.thread_time() - started
    assert work < MAX_WORK_SECONDS, f"{method} {path}?{query[:200]} took {work:.2f} s of CPU time"
    return response.status_code


def test_the_walk_finds_the_portal_the_webhooks_and_the_login_pages():
    assert {"portal/koder/", "portal/abonnement/", "portal/logg-inn/", "portal/glemt-passord/"} <= set(PUBLIC_ROUTES)
    assert {"webhooks/graph/", "webhooks/graph/lifecycle/", "webhooks/google/"} <= set(PUBLIC_ROUTES)
    assert "portal/brukere/<int:pk>/" in PUBLIC_ROUTES


@settings(FUZZ, max_examples=20)
@given(data=st.data())
def test_no_public_url_answers_500_to_odd_input_from_anyone(warm, data):
    clients = _identities(warm)
    for route in PUBLIC_ROUTES:
        for method in ("GET", "POST"):
            who = data.draw(st.sampled_from(sorted(clients)))
            client = clients[who]
            concrete = _path(route, data.draw)
            query = data.draw(query_strings())
            if method == "GET":
                status = _ask(client, "GET", concrete, query)
                assert status < 500, f"{who}: GET {concrete}?{query[:200]} → {status}"
            else:
                body, content_type = data.draw(bodies())
                status = _ask(client, "POST", concrete, query, body, content_type)
                assert status < 500, f"{who}: POST {concrete} {body[:200]!r} → {status}"


FAR = "notice=9999-12-31&start=9999-12-31T23:00&end=9999-12-31T23:59&subject=M%C3%B8te&show_as=busy&all_day=on"
WORST_CASES = [
    ("GET", FAR + "&q=%00&side=999999999999&vis=%ED%A0%80&validationToken=%00", b"", ""),
    ("GET", FAR.replace("9999", "0001"), b"", ""),
    ("POST", "", (FAR + "&email=%00&username=%00&password=%00").encode(), "application/x-www-form-urlencoded"),
    ("POST", "", ("[" * 1000 + "]" * 1000).encode(), "application/json"),
    ("POST", "", b"x=" + b"9" * 3_000_000, "application/x-www-form-urlencoded"),  # DATA_UPLOAD_MAX_MEMORY_SIZE
    ("POST", "", "&".join(f"f{i}=1" for i in range(1100)).encode(), "application/x-www-form-urlencoded"),
]


@pytest.mark.parametrize("who", ["anonymous", "admin", "accountant"])
def test_the_worst_inputs_are_cheap_and_never_a_500(warm, who):
    """Far dates (the notice calculator, try a subject), NUL, surrogates, deep JSON, too big, too many fields."""
    client = _identities(warm)[who]
    for route in PUBLIC_ROUTES:
        for method, query, body, content_type in WORST_CASES:
            status = _ask(client, method, _path(route), query, body, content_type)
            assert status < 500, f"{who}: {method} {_path(route)}?{query} {body[:100]!r} → {status}"


def test_the_notice_calculator_answers_the_farthest_allowed_notice_in_well_under_a_second(warm):
    assert _ask(warm.admin, "GET", "/portal/abonnement/", "notice=2100-12-31") == 200
    assert _ask(warm.admin, "GET", "/portal/abonnement/", "notice=9999-08-01") == 200


# --- a sample of admin ---------------------------------------------------------------------------


def _changelist_parameters(model_admin) -> list[str]:  # type: ignore[no-untyped-def]
    names = ["o", "p", "q", "e", "all", "_popup", "_to_field"]
    if model_admin.date_hierarchy:
        names += [f"{model_admin.date_hierarchy}__{part}" for part in ("year", "month", "day")]
    for entry in model_admin.list_filter:
        if isinstance(entry, str):
            names += [f"{entry}__exact", f"{entry}__gte", f"{entry}__lt", f"{entry}__isnull", f"{entry}__id__exact"]
        elif isinstance(entry, type) and hasattr(entry, "parameter_name"):
            names.append(entry.parameter_name)
    return names


@pytest.fixture
def staff() -> Client:
    user = get_user_model().objects.create_superuser("staff", "staff@nettsoft.example", "Riktig-passord-1")
    client = Client()
    client.force_login(user)
    return client


@settings(FUZZ, max_examples=8)
@given(data=st.data())
def test_no_admin_changelist_answers_500_to_odd_parameters(tenant, staff, data):
    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        names = _changelist_parameters(model_admin)
        chosen = data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=4))
        odd = st.one_of(ODD_TEXT, st.sampled_from(["zzz", "999999999", "-1", "0", "1.-2", "99999", "2026"]))
        query = "&".join(f"{name}={_encode(data.draw(odd))}" for name in chosen)
        path = f"/admin/{opts.app_label}/{opts.model_name}/"
        status = _ask(staff, "GET", path, query)
        assert status < 500, f"GET {path}?{query[:300]} → {status}"


@pytest.mark.parametrize("query", ["o=zzz&p=999999999&q=%00", "o=-99.x&p=-1&all=&q=%ED%A0%80" + "x" * 5000])
def test_every_admin_changelist_takes_the_classic_odd_parameters(tenant, staff, query):
    for model in admin.site._registry:
        path = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        status = _ask(staff, "GET", path, query)
        assert status < 500, f"GET {path}?{query} → {status}"


# --- the fixed commands --------------------------------------------------------------------------


def _mutations(good: dict) -> st.SearchStrategy[str]:  # type: ignore[type-arg]
    """JSON text: the good input with one field, one nested field or one new field made odd; or any JSON."""

    def replace(path: list, value) -> str:  # type: ignore[no-untyped-def, type-arg]
        payload = json.loads(json.dumps(good))
        target = payload
        for key in path[:-1]:
            target = target[key]
        if isinstance(target, list):
            target[path[-1] % len(target)] = value
        else:
            target[path[-1]] = value
        return json.dumps(payload)

    paths = []

    def collect(node, path):  # type: ignore[no-untyped-def]
        if isinstance(node, dict):
            for key, child in node.items():
                paths.append([*path, key])
                collect(child, [*path, key])
        elif isinstance(node, list):
            for index, child in enumerate(node):
                paths.append([*path, index])
                collect(child, [*path, index])

    collect(good, [])
    new_field = st.builds(lambda key: [key], ODD_TEXT)
    return st.one_of(
        st.builds(replace, st.sampled_from(paths) | new_field, _JSON_VALUES),
        _JSON_VALUES.map(json.dumps),
        st.sampled_from(["[" * 1000 + "]" * 1000, "1" * 5000, "", "{", '"\\ud800"', "NaN"]),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_mutations(GOOD_QUOTE) | _mutations(GOOD_PREVIEW))
@pytest.mark.parametrize("command", ["billing_quote", "preview_absences"])
def test_the_fixed_commands_answer_bad_json_with_one_clear_line_never_a_traceback(tmp_path, command, text):
    path = tmp_path / "input.json"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    out = io.StringIO()
    started = time.thread_time()
    try:
        call_command(command, str(path), stdout=out)
    except CommandError as error:  # manage.py prints "CommandError: …" on stderr and exits 1
        assert "\n" not in str(error) and str(error).strip()
    else:
        json.loads(out.getvalue())
    assert time.thread_time() - started < MAX_WORK_SECONDS * 2


@pytest.mark.parametrize("value", ["0001-01-01", "0001-01-01 00:30"])
def test_a_filter_date_too_far_out_for_utc_is_an_invalid_filter_not_a_500(staff, value):
    response = staff.get("/admin/customers/customer/", {"created_at__gte": value})
    assert (response.status_code, response["Location"]) == (302, "/admin/customers/customer/?e=1")
    assert staff.get(response["Location"]).status_code == 200


def test_a_nul_character_in_an_admin_filter_is_an_invalid_filter_not_a_database_error(staff):
    response = staff.get("/admin/django_q/schedule/", {"cluster__exact": "a\x00b"})
    assert (response.status_code, response["Location"]) == (302, "/admin/django_q/schedule/?e=1")
