"""The login simulator checks certificate client assertions as certificate-credentials.md describes them: the
thumbprint names a registered certificate, its key signed the JWT, `aud` is the tenant's token endpoint, and the
assertion has not expired; anything else is refused with Entra's AADSTS code."""

import base64
import hashlib
import time
import uuid

import jwt
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from devtools.simulators import Simulators
from devtools.simulators.demo import app_certificate

TENANT = "abababab-1111-4222-8333-444444444444"
CLIENT = "cdcdcdcd-1111-4222-8333-444444444444"


@pytest.fixture(scope="module")
def login():
    with Simulators.start() as sims:
        key, certificate, thumbprint = app_certificate("test app")
        sims.login.add_multi_tenant_app(
            CLIENT, name="Test app", permissions=["Calendars.Read"], certificates=[certificate]
        )
        sims.graph.add_tenant(TENANT)
        sims.login.grant_consent(TENANT, CLIENT)
        yield sims, key, certificate, thumbprint


def x5t(thumbprint_hex: str) -> str:
    return base64.urlsafe_b64encode(bytes.fromhex(thumbprint_hex)).rstrip(b"=").decode()


def token_answer(sims, assertion: str) -> requests.Response:
    return requests.post(
        f"{sims.login_url}/{TENANT}/oauth2/v2.0/token",
        data={
            "client_id": CLIENT,
            "grant_type": "client_credentials",
            "scope": "https://graph.microsoft.com/.default",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        },
        verify=sims.ca_path,
        timeout=10,
    )


def assertion(sims, key: str, *, thumbprint: str, aud: str | None = None, expires_in: int = 600, sha256: bool = False):
    now = int(time.time())
    claims = {
        "aud": aud or f"{sims.login_url}/{TENANT}/oauth2/v2.0/token",
        "iss": CLIENT,
        "sub": CLIENT,
        "jti": str(uuid.uuid4()),
        "iat": now,
        "exp": now + expires_in,
    }
    header = {"x5t#S256": x5t(thumbprint)} if sha256 else {"x5t": x5t(thumbprint)}
    return jwt.encode(claims, key, algorithm="PS256" if sha256 else "RS256", headers=header)


def aadsts(answer: requests.Response) -> tuple[int, str, list[int]]:
    body = answer.json()
    return answer.status_code, body.get("error", ""), body.get("error_codes", [])


def test_a_well_formed_assertion_gets_a_token_by_sha1_or_sha256_thumbprint(login):
    sims, key, certificate, thumbprint = login
    der = x509.load_pem_x509_certificate(certificate.encode()).public_bytes(Encoding.DER)
    sha256 = hashlib.sha256(der).hexdigest()

    by_sha1 = token_answer(sims, assertion(sims, key, thumbprint=thumbprint))
    by_sha256 = token_answer(sims, assertion(sims, key, thumbprint=sha256, sha256=True))

    assert by_sha1.status_code == 200 and by_sha1.json()["access_token"]
    assert by_sha256.status_code == 200


def test_an_unregistered_thumbprint_another_key_another_audience_or_an_expired_assertion_is_refused(login):
    sims, key, _certificate, thumbprint = login
    other_key, _other_certificate, other_thumbprint = app_certificate("someone else")

    assert aadsts(token_answer(sims, assertion(sims, other_key, thumbprint=other_thumbprint))) == (
        401,
        "invalid_client",
        [700027],
    )
    assert aadsts(token_answer(sims, assertion(sims, other_key, thumbprint=thumbprint))) == (
        401,
        "invalid_client",
        [7000274],
    )
    assert aadsts(token_answer(sims, assertion(sims, key, thumbprint=thumbprint, aud="https://elsewhere/token")))[
        :2
    ] == (
        401,
        "invalid_client",
    )
    assert aadsts(token_answer(sims, assertion(sims, key, thumbprint=thumbprint, expires_in=-60))) == (
        401,
        "invalid_client",
        [700024],
    )


def test_before_consent_the_multi_tenant_app_is_not_in_the_tenant(login):
    sims, key, _certificate, thumbprint = login
    other_tenant = "efefefef-1111-4222-8333-444444444444"
    sims.graph.add_tenant(other_tenant)
    signed = jwt.encode(
        {
            "aud": f"{sims.login_url}/{other_tenant}/oauth2/v2.0/token",
            "iss": CLIENT,
            "sub": CLIENT,
            "exp": int(time.time()) + 600,
            "jti": "x",
        },
        key,
        algorithm="RS256",
        headers={"x5t": x5t(thumbprint)},
    )
    answer = requests.post(
        f"{sims.login_url}/{other_tenant}/oauth2/v2.0/token",
        data={
            "client_id": CLIENT,
            "grant_type": "client_credentials",
            "scope": "https://graph.microsoft.com/.default",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": signed,
        },
        verify=sims.ca_path,
        timeout=10,
    )
    assert aadsts(answer) == (400, "unauthorized_client", [700016])
