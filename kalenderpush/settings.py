"""Settings for Kalender Push, read from the environment with django-environ.

With no environment at all this is the embedded default: DEBUG on, a SQLite file, django-q2 on the
ORM broker and Celery running tasks eagerly. Production sets DEBUG=false and the variables documented
in .env.example (SECRET_KEY is then required, cookies are secure and HSTS is on).
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from common.error_reports import start_error_reports
from common.json_logs import LOG_FORMATTERS

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DEBUG", default=True)

if DEBUG:
    SECRET_KEY = env.str("SECRET_KEY", default="django-insecure-embedded-default-only-never-use-in-production")
else:
    # Raises ImproperlyConfigured("Set the SECRET_KEY environment variable") when missing.
    SECRET_KEY = env.str("SECRET_KEY")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
CSRF_FAILURE_VIEW = "kalenderpush.error_pages.csrf_failure"  # Norwegian, in the portal's or admin's look

INSTALLED_APPS = [
    "kalenderpush.apps.KalenderPushAdminConfig",  # django.contrib.admin with our site (2FA, dashboard)
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "kalenderpush.apps.BackgroundJobsConfig",  # django_q (django-q2), named in Norwegian
    "simple_history",
    "kalenderpush.apps.SignInSecurityConfig",  # axes
    "django_otp",
    "kalenderpush.apps.TotpDevicesConfig",  # django_otp.plugins.otp_totp
    "kalenderpush.apps.BackupCodesConfig",  # django_otp.plugins.otp_static
    "customers",
    "billing",
    "sync",
    "portal",
]
# The lab tooling (devtools/: simulators, benchmarks, and the seed_demo, demo_sync and bench_* commands) is an app
# only with DEBUG on, or with DEVTOOLS=true for a benchmark under production settings; production never loads it.
DEVTOOLS = env.bool("DEVTOOLS", default=DEBUG)
if DEVTOOLS:
    INSTALLED_APPS.append("devtools")

MIDDLEWARE = [
    "kalenderpush.probes.ProbeMiddleware",  # /healthz, /readyz: before the host check and the https redirect
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a locked-out login into the lockout page
]

ROOT_URLCONF = "kalenderpush.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "portal.context.portal_membership",
            ],
        },
    },
]

WSGI_APPLICATION = "kalenderpush.wsgi.application"

# --- Database -------------------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the q2 cluster write to one file: wait for locks instead of failing,
    # take the write lock up front, and let readers run beside the writer (WAL).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL",
        }
    )
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # A database that does not answer fails a request (and /readyz) within seconds instead of hanging it.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", env.int("DATABASE_CONNECT_TIMEOUT", default=5)
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out username/IP before checking anything
    "common.authentication.CaseInsensitiveModelBackend",  # user names (e-mail addresses) in any case
]
LOGIN_URL = "portal:login"
LOGIN_REDIRECT_URL = "portal:overview"
LOGOUT_REDIRECT_URL = "portal:login"
PASSWORD_RESET_TIMEOUT = env.int("PASSWORD_RESET_TIMEOUT", default=3 * 24 * 3600)  # invitations too

# Login throttling (django-axes): a username from one address is locked after AXES_FAILURE_LIMIT
# failures in a row, for AXES_COOLOFF_HOURS; staff unlock early in admin under
# Innloggingssikkerhet › Innloggingsforsøk (axes' access attempts).
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_HOURS", default=1.0)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_USERNAME_CALLABLE = "common.authentication.axes_username"  # IT@… and it@… share one count
AXES_LOCKOUT_TEMPLATE = "portal/locked_out.html"
AXES_IPWARE_META_PRECEDENCE_ORDER = (
    ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"] if env.bool("SECURE_PROXY_SSL_HEADER", default=False) else ["REMOTE_ADDR"]
)

# Two-factor for staff (django-otp, TOTP): required whenever DEBUG is off. Staff without a verified
# device cannot use admin; see docs/operations.md for enrolling the first device.
OTP_REQUIRED_FOR_STAFF = env.bool("OTP_REQUIRED_FOR_STAFF", default=not DEBUG)
OTP_TOTP_ISSUER = "Kalender Push"

# --- Language and time ----------------------------------------------------------------------------
LANGUAGE_CODE = "nb"
LANGUAGES = [("nb", "Norsk bokmål"), ("en", "English")]
# Ours first; then Norwegian for third-party apps' strings their catalogs lack (kept apart: makemessages
# would mark them obsolete in ours).
LOCALE_PATHS = [BASE_DIR / "locale", BASE_DIR / "third_party_locale"]
TIME_ZONE = "Europe/Oslo"
USE_I18N = True
USE_TZ = True
USE_THOUSAND_SEPARATOR = True

# --- Static files ---------------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
# Production serves what `collectstatic` (scripts/release.sh) put in STATIC_ROOT through WhiteNoise: compressed,
# with content hashes in the names and cached for a year. With DEBUG on, runserver serves the apps' files as they are.
if not DEBUG:
    MIDDLEWARE.insert(
        MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
        "whitenoise.middleware.WhiteNoiseMiddleware",
    )
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- Security (production values apply whenever DEBUG is off) -------------------------------------
# `make release` fails on any deployment warning; a check an installation deliberately waives is named here.
SILENCED_SYSTEM_CHECKS = env.list("SILENCED_SYSTEM_CHECKS", default=[])
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=8 * 3600)
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    # Both only ever off for a test over plain http on loopback (tests/services/test_production.py).
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_EXPIRE_AT_BROWSER_CLOSE = env.bool("SESSION_EXPIRE_AT_BROWSER_CLOSE", default=True)
    if env.bool("SECURE_PROXY_SSL_HEADER", default=False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- E-mail ---------------------------------------------------------------------------------------
EMAIL_BACKEND = env.str(
    "EMAIL_BACKEND",
    default="django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Kalender Push <kalenderpush@nettsoft.no>")
# Where the portal tells Nettsoft staff about termination requests and other customer actions.
STAFF_NOTIFICATION_EMAIL = env.str("STAFF_NOTIFICATION_EMAIL", default="kundeservice@nettsoft.no")

# --- Celery: the calendar-sync fleet --------------------------------------------------------------
# Without a broker, tasks run inline (eagerly) wherever they are called, e.g. in the q2 worker.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="")
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not CELERY_BROKER_URL)
if not CELERY_BROKER_URL:
    CELERY_BROKER_URL = "memory://"
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default="") or None
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {"sync.tasks.*": {"queue": "sync"}}
CELERY_TIMEZONE = TIME_ZONE
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Workers log through LOGGING below (LOG_FORMAT), like every other process.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Redis hands a task whose worker died (killed, machine gone) to another worker after this many seconds;
# it must stay above the longest countdown a task is retried with (sync: at most 30 s, common.backoff).
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)}

# --- Cache ----------------------------------------------------------------------------------------
# Shared by every process: the q2 cluster's heartbeat lives here, and /readyz reads it. Default: the broker's
# Redis when there is one, else memory of each process (the embedded default; /readyz cannot see the cluster).
CACHES = {
    "default": env.cache_url(
        "CACHE_URL", default=CELERY_BROKER_URL if CELERY_BROKER_URL.startswith("redis") else "locmemcache://"
    )
}
if CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache":
    CACHES["default"].setdefault("OPTIONS", {}).update({"socket_connect_timeout": 2, "socket_timeout": 2})

# --- django-q2: schedules and the back office -----------------------------------------------------
Q_CLUSTER = {
    "name": "kalenderpush",
    "orm": "default",
    "workers": env.int("Q_WORKERS", default=2),
    # a job running longer is stopped; a job not acknowledged (its worker died) is handed out again
    "timeout": env.int("Q_TIMEOUT_SECONDS", default=1800),
    "retry": env.int("Q_RETRY_SECONDS", default=2100),
    "max_attempts": 3,
    "catch_up": False,
    "poll": 1,
}

# --- Secrets at rest ------------------------------------------------------------------------------
# Fernet key(s) encrypting calendar and MBN credentials; required in production.
CREDENTIALS_KEY = env.str("CREDENTIALS_KEY", default="")

# A billing run without progress for this long lost its worker; the quarter's next run continues it.
BILLING_RUN_STALE_SECONDS = env.int("BILLING_RUN_STALE_SECONDS", default=300)

# --- Calendar sync ---------------------------------------------------------------------------------
# The port `make run` serves the demo on; the default public address below follows it.
PORT = env.int("PORT", default=8000)
# Public base URL of this site, for the webhooks Microsoft Graph calls (https in production).
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default=f"http://127.0.0.1:{PORT}")
SYNC_HORIZON_DAYS = env.int("SYNC_HORIZON_DAYS", default=14)
# Days after a customer's service ended before its secrets and personal data are deleted (purge_ended_customers)
PURGE_AFTER_DAYS = env.int("PURGE_AFTER_DAYS", default=90)
# A user's sync lock: a sync whose worker died blocks the user's next sync for at most this long.
SYNC_LOCK_SECONDS = env.int("SYNC_LOCK_SECONDS", default=120)
# A calendar with live change notifications (Graph, Google) is still read once in this many minutes by the sweep,
# at a minute of its own: the safety net for a lost notification (`sync.pipeline.pushed_read_due`).
SYNC_PUSHED_READ_MINUTES = env.int("SYNC_PUSHED_READ_MINUTES", default=60)
# Each process spaces its MBN calls to stay under the enterprise's limit (MBN: 20 requests/s).
MBN_REQUESTS_PER_SECOND = env.float("MBN_REQUESTS_PER_SECOND", default=18.0)
# Where processes share that pace: Redis (the broker's, by default) so that all workers together stay
# under the limit; empty or not Redis: each process paces alone.
MBN_PACER_URL = env.str("MBN_PACER_URL", default=CELERY_BROKER_URL if CELERY_BROKER_URL.startswith("redis") else "")
# CA bundle for TLS to the login endpoint (the simulators' own CA in tests and the demo).
MICROSOFT_LOGIN_CA_BUNDLE = env.str("MICROSOFT_LOGIN_CA_BUNDLE", default="") or None

# --- External services (real by default, simulators in tests and the demo) -------------------------
MICROSOFT_LOGIN_BASE_URL = env.str("MICROSOFT_LOGIN_BASE_URL", default="https://login.microsoftonline.com")
GRAPH_BASE_URL = env.str("GRAPH_BASE_URL", default="https://graph.microsoft.com/v1.0")
# Exchange on-premises: mailboxes read at once per service account (Exchange's EWSMaxConcurrency is 10).
EWS_MAX_CONNECTIONS = env.int("EWS_MAX_CONNECTIONS", default=8)
EWS_BASE_URL = env.str("EWS_BASE_URL", default="https://outlook.office365.com/EWS/Exchange.asmx")
GOOGLE_TOKEN_URL = env.str("GOOGLE_TOKEN_URL", default="https://oauth2.googleapis.com/token")
GOOGLE_CALENDAR_BASE_URL = env.str("GOOGLE_CALENDAR_BASE_URL", default="https://www.googleapis.com/calendar/v3/")
GOOGLE_DIRECTORY_BASE_URL = env.str("GOOGLE_DIRECTORY_BASE_URL", default="https://admin.googleapis.com/")
# Telenor publishes the MBN partner API only to approved partners: no public default.
MBN_BASE_URL = env.str("MBN_BASE_URL", default="")

# --- Nettsoft's own credentials, shared by the customers that connect through the portal ---------
# The multi-tenant Entra ID app customers' admins consent to: a certificate (private key file + the
# certificate's SHA-1 thumbprint in hex), preferred, or a client secret (docs/operations.md).
NETTSOFT_GRAPH_CLIENT_ID = env.str("NETTSOFT_GRAPH_CLIENT_ID", default="")
NETTSOFT_GRAPH_CERTIFICATE_KEY_FILE = env.str("NETTSOFT_GRAPH_CERTIFICATE_KEY_FILE", default="")
NETTSOFT_GRAPH_CERTIFICATE_THUMBPRINT = env.str("NETTSOFT_GRAPH_CERTIFICATE_THUMBPRINT", default="")
NETTSOFT_GRAPH_CLIENT_SECRET = env.str("NETTSOFT_GRAPH_CLIENT_SECRET", default="")
# The service-account JSON key customers authorise under Google domain-wide delegation (its client_id).
NETTSOFT_GOOGLE_SERVICE_ACCOUNT_FILE = env.str("NETTSOFT_GOOGLE_SERVICE_ACCOUNT_FILE", default="")
# Telenor's OAuth client for Nettsoft as MBN partner, used by connections without their own.
MBN_PARTNER_CLIENT_ID = env.str("MBN_PARTNER_CLIENT_ID", default="")
MBN_PARTNER_CLIENT_SECRET = env.str("MBN_PARTNER_CLIENT_SECRET", default="")
# How long an admin-consent link stays valid (its state), in seconds.
CONNECTION_CONSENT_MAX_AGE_SECONDS = env.int("CONNECTION_CONSENT_MAX_AGE_SECONDS", default=900)
# Whether a customer may give an Exchange (EWS) address on loopback, link-local or a private network (and plain
# http on loopback): only a lab's simulator lives there. Off in production: the service account's password is sent
# to that address and what answers is shown, so it must not reach Nettsoft's own network.
EWS_ALLOW_PRIVATE_ENDPOINTS = env.bool("EWS_ALLOW_PRIVATE_ENDPOINTS", default=DEVTOOLS)

# --- Billing: the seller (Nettsoft) as printed on invoices, EHF and letters ----------------------
SELLER_NAME = env.str("SELLER_NAME", default="Nettsoft AS")
SELLER_ORG_NUMBER = env.str("SELLER_ORG_NUMBER", default="918273646")
SELLER_ADDRESS_LINE = env.str("SELLER_ADDRESS_LINE", default="Kongens gate 1")
SELLER_POSTAL_CODE = env.str("SELLER_POSTAL_CODE", default="0153")
SELLER_CITY = env.str("SELLER_CITY", default="Oslo")
SELLER_COUNTRY_CODE = env.str("SELLER_COUNTRY_CODE", default="NO")
SELLER_EMAIL = env.str("SELLER_EMAIL", default="faktura@nettsoft.no")
SELLER_PHONE = env.str("SELLER_PHONE", default="+47 22 00 00 00")
SELLER_BANK_ACCOUNT = env.str("SELLER_BANK_ACCOUNT", default="15037587378")
INVOICE_DUE_DAYS = env.int("INVOICE_DUE_DAYS", default=14)
# The official Peppol BIS Billing 3.0 validation artefacts (UBL 2.1 XSD, CEN and Peppol schematron):
# ../shared/peppol beside the project when present, else the same release vendored in vendor/peppol.
_SHARED_PEPPOL = BASE_DIR.parent / "shared" / "peppol"
PEPPOL_RULES_DIR = env.path(
    "PEPPOL_RULES_DIR", default=_SHARED_PEPPOL if _SHARED_PEPPOL.is_dir() else BASE_DIR / "vendor" / "peppol"
)

# --- The demo -------------------------------------------------------------------------------------
# Written by seed_demo (embedded default only): the demo admin's generated password.
DEMO_STATE_DIR = env.path("DEMO_STATE_DIR", default=BASE_DIR / "var")

# --- Operations: logs, health, metrics, error reports (docs/operations.md) --------------------------
# LOG_FORMAT=json: one JSON object per line (time, level, logger, message, exception), for a log collector.
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
if LOG_FORMAT not in LOG_FORMATTERS:
    raise ImproperlyConfigured(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATTERS)}, not {LOG_FORMAT!r}.")
# The bearer token Prometheus sends to /metrics; unset: /metrics answers 404.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# How long /readyz waits for the Celery workers to answer a ping (seconds).
READYZ_CELERY_TIMEOUT = env.float("READYZ_CELERY_TIMEOUT", default=1.0)
# Error reports to Sentry when set; what is sent is scrubbed (common/error_reports.py).
SENTRY_DSN = env.str("SENTRY_DSN", default="")
SENTRY_ENVIRONMENT = env.str("SENTRY_ENVIRONMENT", default="production")
if SENTRY_DSN:
    start_error_reports(dsn=SENTRY_DSN, environment=SENTRY_ENVIRONMENT)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": LOG_FORMATTERS,
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "weasyprint": {"level": "WARNING"},
        "fontTools": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
    },
}
