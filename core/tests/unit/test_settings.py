from pathlib import Path

import pytest

from cryptopred_core.records import PAIR_PATTERN
from cryptopred_core.settings import DEFAULT_PAIRS, SettingsError, check_pairs, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in list(__import__("os").environ):
        if name.startswith("CRYPTOPRED_"):
            monkeypatch.delenv(name)


def test_defaults_point_at_the_embedded_stack():
    s = load_settings()
    assert s.bootstrap_servers == "127.0.0.1:9092"
    # the password is in the stack's libpq password file, never in the URI
    passfile = Path.cwd() / ".data" / "secrets" / "pgpass"
    assert s.db_url == f"postgresql://postgres@127.0.0.1:5433/cryptopred?passfile={passfile}"
    assert s.ray_token_path == Path.cwd() / ".data" / "ray" / "auth_token"
    assert s.mlflow_uri == "http://127.0.0.1:5000"
    assert s.ray_dashboard == "http://127.0.0.1:8265"
    assert s.pairs == list(DEFAULT_PAIRS)
    assert s.candle_seconds == [60]
    assert s.topic_partitions == 2
    assert s.consumer_session_timeout_ms == 6000


def test_env_and_dotenv_are_read(monkeypatch, tmp_path):
    (tmp_path / ".env").write_text("CRYPTOPRED_TOPIC_PARTITIONS=4\n")
    monkeypatch.setenv("CRYPTOPRED_PAIRS", "btc-usd, ETH/EUR")
    monkeypatch.setenv("CRYPTOPRED_CANDLE_SECONDS", "300,60,300")
    monkeypatch.setenv("CRYPTOPRED_KAFKA_BOOTSTRAP", "kafka:9092")
    s = load_settings()
    assert s.topic_partitions == 4
    assert s.pairs == ["BTC/USD", "ETH/EUR"]
    assert s.candle_seconds == [60, 300]
    assert s.bootstrap_servers == "kafka:9092"
    assert s.data_dir == tmp_path / ".data"  # absolute: other processes get the same folder


@pytest.mark.parametrize(
    ("env", "value", "words"),
    [
        ("CRYPTOPRED_KAFKA_BOOTSTRAP", "not an address", "malformed address"),
        ("CRYPTOPRED_KAFKA_BOOTSTRAP", "host:99999", "out of range"),
        ("CRYPTOPRED_DATABASE_URL", "mysql://x", "postgresql://"),
        ("CRYPTOPRED_MLFLOW_TRACKING_URI", "ftp://x", "http"),
        ("CRYPTOPRED_DB_DIALECT", "oracle", "postgres"),
        ("CRYPTOPRED_TOPIC_PARTITIONS", "0", "greater than or equal to 1"),
        ("CRYPTOPRED_PAIRS", "BTCUSD", "malformed pair"),
        ("CRYPTOPRED_CANDLE_SECONDS", "60,-5", "positive"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(monkeypatch, env, value, words):
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert "\n" not in message
    assert env in message
    assert words in message


def test_settings_environ_rebuilds_the_same_settings(monkeypatch):
    from cryptopred_core.settings import Settings, settings_environ

    original = load_settings(
        pairs="SOL/USD,XRP/EUR", candle_seconds="60,300", db_timeout_s=7.5, fault_hooks=True
    )
    env = settings_environ(original)
    assert env["CRYPTOPRED_PAIRS"] == "SOL/USD,XRP/EUR"
    assert "CRYPTOPRED_KAFKA_BOOTSTRAP" not in env  # unset stays unset
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert Settings() == original


def test_a_bind_host_must_be_an_ip_address():
    with pytest.raises(SettingsError, match="CRYPTOPRED_BIND_HOST: expected an IP address"):
        load_settings(bind_host="my laptop")
    assert load_settings(bind_host="::1").bind_host == "::1"


def test_a_data_dir_with_spaces_keeps_the_passfile_usable(tmp_path):
    import psycopg.conninfo

    settings = load_settings(data_dir=tmp_path / "my data")
    params = psycopg.conninfo.conninfo_to_dict(settings.db_url)
    assert params["passfile"] == str(tmp_path / "my data" / "secrets" / "pgpass")


def test_pairs_follow_the_record_rule():
    assert check_pairs(["btc-usd", " 1inch/eur "]) == ["BTC/USD", "1INCH/EUR"]
    assert all(PAIR_PATTERN.fullmatch(p) for p in DEFAULT_PAIRS)
    for bad in ("BTCUSD", "B/USD", "BTC/USD/EUR"):
        with pytest.raises(ValueError, match="malformed pair"):
            check_pairs([bad])
