"""Settings: the embedded default with no environment, and production settings that pass check --deploy."""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KEEP = ("PATH", "HOME", "LANG", "PYTHONPATH")


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean_env = {key: os.environ[key] for key in KEEP if key in os.environ}
    clean_env.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=clean_env, capture_output=True, text=True, timeout=120
    )


PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "kalenderpush.nettsoft.no",
    "DATABASE_URL": "postgres://kalenderpush:secret@db.internal:5432/kalenderpush",
    "CELERY_BROKER_URL": "redis://redis.internal:6379/0",
}


def test_production_settings_pass_check_deploy_with_no_warnings():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_without_a_secret_key_refuses_to_start():
    env = {key: value for key, value in PRODUCTION.items() if key != "SECRET_KEY"}
    result = _manage("check", **env)
    assert result.returncode != 0
    assert "Set the SECRET_KEY environment variable" in result.stderr


SHOW = (
    "from django.conf import settings as s; import json; print(json.dumps({"
    "'engine': s.DATABASES['default']['ENGINE'], 'eager': s.CELERY_TASK_ALWAYS_EAGER,"
    "'q2_orm': s.Q_CLUSTER.get('orm'), 'debug': s.DEBUG, 'tz': s.TIME_ZONE, 'lang': s.LANGUAGE_CODE,"
    "'languages': [code for code, _ in s.LANGUAGES], 'hsts': s.SECURE_HSTS_SECONDS,"
    "'secure_cookie': s.SESSION_COOKIE_SECURE, 'broker': s.CELERY_BROKER_URL,"
    "'staff_2fa': s.OTP_REQUIRED_FOR_STAFF, 'csrf_secure': getattr(s, 'CSRF_COOKIE_SECURE', False)}))"
)


def test_with_no_environment_the_embedded_default_is_sqlite_q2_orm_and_eager_celery():
    result = _manage("shell", "--no-imports", "-c", SHOW)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown == {
        "engine": "django.db.backends.sqlite3",
        "eager": True,
        "q2_orm": "default",
        "debug": True,
        "tz": "Europe/Oslo",
        "lang": "nb",
        "languages": ["nb", "en"],
        "hsts": 0,
        "secure_cookie": False,
        "broker": "memory://",
        "staff_2fa": False,
        "csrf_secure": False,
    }


def test_production_environment_selects_postgresql_and_a_real_broker():
    result = _manage("shell", "--no-imports", "-c", SHOW, **PRODUCTION)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["engine"] == "django.db.backends.postgresql"
    assert shown["eager"] is False
    assert shown["broker"] == "redis://redis.internal:6379/0"
    assert shown["hsts"] >= 31536000
    assert shown["secure_cookie"] is True
    assert shown["csrf_secure"] is True
    assert shown["staff_2fa"] is True, "production refuses staff without a second factor"


def test_env_example_documents_every_variable_the_settings_read():
    settings_source = (ROOT / "kalenderpush" / "settings.py").read_text()
    import re

    read = set(re.findall(r'env\.\w+\(\s*"([A-Z_]+)"', settings_source))
    documented = set(re.findall(r"^#?\s*([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE))
    assert read, "no variables found in settings.py"
    assert read <= documented, f"not in .env.example: {sorted(read - documented)}"


def test_the_default_public_address_follows_port_so_webhooks_reach_the_demo_on_another_port():
    show = "from django.conf import settings as s; print(s.PUBLIC_BASE_URL)"

    assert _manage("shell", "--no-imports", "-c", show, PORT="8050").stdout.strip() == "http://127.0.0.1:8050"
    assert _manage("shell", "--no-imports", "-c", show).stdout.strip() == "http://127.0.0.1:8000"
    assert (
        _manage("shell", "--no-imports", "-c", show, PORT="8050", PUBLIC_BASE_URL="https://kp.example").stdout.strip()
        == "https://kp.example"
    )


def test_the_demo_script_serves_on_port_and_hands_it_to_every_process():
    script = (ROOT / "scripts" / "run.sh").read_text()

    assert "export PORT=${PORT:-8000}" in script
    assert "127.0.0.1:$PORT" in script
    assert "8000" not in script.replace("${PORT:-8000}", "")
