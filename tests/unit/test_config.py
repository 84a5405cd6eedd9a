from pathlib import Path

import pytest

from dockyard.config import ConfigError, load_config


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for key in list(__import__("os").environ):
        if key.startswith("DOCKYARD_"):
            monkeypatch.delenv(key)


def test_defaults_are_embedded():
    config = load_config()
    assert (config.host, config.port) == ("127.0.0.1", 5000)
    assert config.data_dir == Path("dockyard-data")
    assert config.resolved_database_url.startswith("sqlite:///")
    assert config.storage_path == (Path("dockyard-data") / "storage").absolute()


def test_file_then_environment_then_flags(tmp_path, monkeypatch):
    file = tmp_path / "dockyard.yml"
    file.write_text("listen: 0.0.0.0:6000\nworkers: 3\nstorage: {path: /srv/a}\n")
    monkeypatch.setenv("DOCKYARD_WORKERS", "5")
    monkeypatch.setenv("DOCKYARD_STORAGE__PATH", "/srv/b")

    config = load_config(file, listen="127.0.0.1:7000")

    assert config.listen == "127.0.0.1:7000"
    assert config.workers == 5
    assert config.storage.path == Path("/srv/b")


def test_bad_value_names_key_and_value(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(listen="nowhere")
    assert "'listen'" in str(caught.value)
    assert "'nowhere'" in str(caught.value)


def test_a_grace_period_past_ten_years_is_refused(monkeypatch):
    # Subtracted from now, a larger one is no date at all.
    monkeypatch.setenv("DOCKYARD_GC__GRACE_PERIOD", "99999999999")
    with pytest.raises(ConfigError, match="'gc.grace_period' has bad value"):
        load_config()


def test_bad_environment_value_names_key(monkeypatch):
    monkeypatch.setenv("DOCKYARD_WORKERS", "many")
    with pytest.raises(ConfigError, match="'workers' has bad value 'many'"):
        load_config()


def test_unknown_file_key_is_refused(tmp_path):
    file = tmp_path / "dockyard.yml"
    file.write_text("listn: 1.2.3.4:5\n")
    with pytest.raises(ConfigError, match="unknown config key 'listn'"):
        load_config(file)


def test_unknown_storage_driver_is_refused(tmp_path):
    file = tmp_path / "dockyard.yml"
    file.write_text("storage: {driver: floppy}\n")
    with pytest.raises(ConfigError, match="storage.driver.*'floppy'"):
        load_config(file)


def test_unreadable_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yml")
    file = tmp_path / "bad.yml"
    file.write_text("listen: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(file)
    file.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(file)


@pytest.mark.parametrize("listen", ["5000", ":5000", "host:0", "host:70000", "h:x"])
def test_listen_must_be_host_and_port(listen):
    with pytest.raises(ConfigError, match="HOST:PORT"):
        load_config(listen=listen)


def test_ipv6_listen_address():
    config = load_config(listen="[::1]:5000")
    assert (config.host, config.port) == ("::1", 5000)


def test_a_bad_upstream_never_shows_its_password(tmp_path):
    file = tmp_path / "dockyard.yml"
    file.write_text(
        "upstreams:\n"
        "  - {name: hub, url: 'https://hub.example', username: u,"
        " password: hunter2, mirror: maybe}\n"
        "  - {name: other, url: 'https://hub.example', password: hunter3}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(file)

    assert "hunter" not in str(caught.value)
    assert "username and password go together" in str(caught.value)


def test_an_upstream_url_with_a_login_is_refused_unshown(tmp_path):
    file = tmp_path / "dockyard.yml"
    file.write_text("upstreams: [{name: hub, url: 'https://u:hunter2@hub.example'}]\n")
    with pytest.raises(ConfigError) as caught:
        load_config(file)

    assert "hunter2" not in str(caught.value)
    assert "not the URL" in str(caught.value)


def test_a_url_in_an_error_hides_its_login(monkeypatch):
    monkeypatch.setenv("DOCKYARD_WORKERS", "many")
    monkeypatch.setenv("DOCKYARD_UPSTREAMS", '[{"name": "HUB", "url": "x://a:pw@b"}]')
    with pytest.raises(ConfigError) as caught:
        load_config()

    assert ":pw@" not in str(caught.value)
    assert "'workers' has bad value 'many'" in str(caught.value)


def test_invalid_yaml_is_one_line_naming_line_and_column(tmp_path):
    file = tmp_path / "bad.yml"
    file.write_text("workers: 2\nlisten: a: b\n")

    with pytest.raises(ConfigError) as caught:
        load_config(file)

    message = str(caught.value)
    assert "\n" not in message
    assert message.endswith("mapping values are not allowed here (line 2, column 10)")
