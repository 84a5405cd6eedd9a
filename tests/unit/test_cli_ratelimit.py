"""`dockyard ratelimit show SOURCE`: which counters a SOURCE names."""

import pytest
from click.testing import CliRunner

from dockyard.cli.ratelimit import parse_source, ratelimit_show


@pytest.mark.parametrize(
    ("source", "key", "shown_as"),
    [
        ("192.0.2.7", "address:192.0.2.7", "192.0.2.7"),
        ("::ffff:192.0.2.7", "address:192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2::99", "address:2001:db8:1:2::/64", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2:0:0:0:1", "address:2001:db8:1:2::/64", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::/64", "address:2001:db8:1:2::/64", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::1/64", "address:2001:db8:1:2::/64", "2001:db8:1:2::/64"),
        ("alice", "account:alice", "alice"),
        ("ci-builder", "account:ci-builder", "ci-builder"),
        ("token:mirror-sync", "account:token:mirror-sync", "token:mirror-sync"),
        ("token:Robot.1", "account:token:Robot.1", "token:Robot.1"),
    ],
)
def test_a_source_names_the_counter_the_server_keeps(source, key, shown_as):
    caller = parse_source(source)

    assert caller.key == key
    assert caller.source == shown_as


@pytest.mark.parametrize(
    ("source", "said"),
    [
        ("2001:db8::/48", "per IPv6 /64"),
        ("2001:db8:1:2::/96", "per IPv6 /64"),
        ("192.0.2.0/24", "per IPv4 address"),
        ("192.0.2.7/32", "per IPv4 address"),
        ("192.0.2.300", "is not an IPv4 or IPv6 address"),
        ("2001:db8::zz", "is not an IPv4 or IPv6 address"),
        ("2001:db8::/64x", "is not an IPv4 or IPv6 address"),
        ("Alice", "an account name, or token:NAME"),
        ("no such thing!", "an account name, or token:NAME"),
        ("alice/app", "an account name, or token:NAME"),
        ("", "an account name, or token:NAME"),
        ("token:", "a token name is up to 64"),
        ("token:two words", "a token name is up to 64"),
    ],
)
def test_a_malformed_source_is_refused_with_the_reason(source, said):
    with pytest.raises(ValueError, match=said):
        parse_source(source)


def test_show_refuses_a_malformed_source_before_reading_anything(tmp_path):
    data_dir = tmp_path / "never-made"
    args = ["2001:db8::/48", "--data-dir", str(data_dir)]

    result = CliRunner().invoke(ratelimit_show, args)

    assert result.exit_code == 2
    assert "Invalid value for 'SOURCE'" in result.output
    assert "give an address or an IPv6 /64" in result.output
    assert not data_dir.exists()


def test_show_help_lists_every_form_of_source():
    result = CliRunner().invoke(ratelimit_show, ["--help"])

    for example in ("203.0.113.7", "2001:db8:1:2::7", "/64", "alice", "token:"):
        assert example in result.output
