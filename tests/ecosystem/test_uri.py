"""RFC 7512 PKCS#11 URIs: parsing, formatting and matching (softshield_cli/uri.py)."""

from __future__ import annotations

import pytest

from softshield_cli.uri import Pkcs11Uri, UriError, object_uri


def test_parse_rfc7512_example():
    uri = Pkcs11Uri.parse("pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;manufacturer=Snake%20Oil,%20Inc.;"
                          "model=1.0;object=my-certificate;type=cert;id=%69%95%3E%5C%F4%BD%EC%91")
    assert uri.token == "The Software PKCS#11 Softtoken"
    assert uri.get("manufacturer") == "Snake Oil, Inc."
    assert uri.object == "my-certificate" and uri.type == "cert" and uri.object_class == 1
    assert uri.id == bytes.fromhex("69953e5cf4bdec91")


def test_query_pin_value_and_source(tmp_path):
    assert Pkcs11Uri.parse("pkcs11:token=a?pin-value=12%2634").pin == "12&34"
    pin_file = tmp_path / "pin"
    pin_file.write_text("5678\n")
    assert Pkcs11Uri.parse(f"pkcs11:token=a?pin-source=file:{pin_file}").pin == "5678"


def test_format_round_trips_and_encodes_like_p11tool():
    uri = object_uri({"model": "nShield emulator", "manufacturer": "softshield", "serial": "AB", "token": "my token"},
                     "key;1", b"\x01", 3)
    text = uri.format()
    assert text == ("pkcs11:model=nShield%20emulator;manufacturer=softshield;serial=AB;token=my%20token;"
                    "id=%01;object=key%3B1;type=private")
    assert Pkcs11Uri.parse(text) == uri
    assert Pkcs11Uri({"token": "t"}, {"pin-value": "a&b"}).format() == "pkcs11:token=t?pin-value=a%26b"


@pytest.mark.parametrize("bad", ["file:x", "pkcs11:token", "pkcs11:type=key", "pkcs11:id=%0", "pkcs11:a=1;a=2",
                                 "pkcs11:slot-id=x"])
def test_bad_uris_are_refused(bad):
    with pytest.raises(UriError):
        Pkcs11Uri.parse(bad)


def test_matching():
    uri = Pkcs11Uri.parse("pkcs11:token=t1;object=k;type=private")
    assert uri.matches_token({"token": "t1", "serial": "x"})
    assert not uri.matches_token({"token": "t2"})
    assert uri.matches_object("k", b"\x01", 3)
    assert not uri.matches_object("k", b"\x01", 2)
    assert not uri.matches_object("other", b"\x01", 3)
    assert Pkcs11Uri.parse("pkcs11:id=%01").matches_object(None, b"\x01", 4)
    assert not Pkcs11Uri.parse("pkcs11:slot-description=x").matches_token({"token": "t1"})
    assert Pkcs11Uri.parse("pkcs11:").matches_token({"token": "anything"})
