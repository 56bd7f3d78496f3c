"""The log API's query string parser (``api.fastpath.log.parse_query``) decodes exactly as ``urllib.parse`` does."""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, unquote_plus, urlencode

from hypothesis import given
from hypothesis import strategies as st

from nodeops.api.fastpath.log import parse_query

# the characters whose escapes matter: the separators, the escape itself, '+', '|' in either case of its escape
_PIECES = st.sampled_from(["%", "%7C", "%7c", "%7", "%2B", "+", "|", "%E4%B8%AD", "%ZZ", "=", "a", "7C", "%25"])
_RAW = st.lists(_PIECES, max_size=12).map("".join)


@given(name=st.text(min_size=1, max_size=12), value=st.text(max_size=40))
def test_encoded_parameters_come_back_as_they_were(name, value):
    params = parse_query(urlencode({name: value}).encode())
    assert params == {name: value}


@given(value=_RAW)
def test_any_escapes_decode_as_unquote_plus(value):
    assert parse_query(b"v=" + value.encode()) == {"v": unquote_plus(value)}


@given(pairs=st.lists(st.tuples(_RAW.filter(lambda text: "=" not in text and text), _RAW), max_size=5))
def test_pairs_decode_as_parse_qsl_with_the_last_value_winning(pairs):
    raw = "&".join(f"{name}={value}" for name, value in pairs if "&" not in name + value)
    expected = dict(parse_qsl(raw, keep_blank_values=True))
    assert parse_query(raw.encode()) == expected


def test_instance_ids_pipes_decode_in_either_case():
    raw = "instance_id=" + quote("host|instance|host|7", safe="").replace("%7C", "%7c", 1)
    assert parse_query(raw.encode()) == {"instance_id": "host|instance|host|7"}
