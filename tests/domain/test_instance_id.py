"""The instance_id codec (spec §4): properties of parse/format plus a table of malformed inputs."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nodeops.domain.instance_id import (
    HostKey,
    InstanceId,
    NodeType,
    ObjectType,
    host_instance_id,
    parse_instance_id,
)
from nodeops.errors import ErrorCode, InvalidInput

MAX_ID = 10**18 - 1  # the codec reads ids of at most 18 digits
ids_ge0 = st.integers(min_value=0, max_value=MAX_ID)
host_ids = st.integers(min_value=1, max_value=MAX_ID)


def _parse_error(raw):
    with pytest.raises(InvalidInput) as excinfo:
        parse_instance_id(raw)
    error = excinfo.value
    assert error.code is ErrorCode.VALIDATION
    assert set(error.problems) == {"instance_id"}
    return error


# -------------------------------------------------------------------------------- property tests


@given(address=st.ip_addresses(), cloud=ids_ge0, supplier=ids_ge0)
def test_host_key_form_round_trips_to_an_equal_instance_id_and_key(address, cloud, supplier):
    key = HostKey.of(str(address), cloud, supplier)
    instance_id = host_instance_id(host_key=key)

    parsed = parse_instance_id(str(instance_id))

    assert parsed == instance_id
    assert parsed.is_host_instance
    assert parsed.bk_host_id is None
    assert parsed.host_key == key
    assert key.ip == address.compressed
    assert ipaddress.ip_address(key.ip) == address


@given(address=st.ip_addresses(v=6), cloud=ids_ge0)
def test_ipv6_host_key_is_kept_compressed_even_when_given_exploded(address, cloud):
    key = HostKey.of(address.exploded.upper(), cloud)
    parsed = parse_instance_id(f"host|instance|host|{address.exploded}-{cloud}-0")
    assert key.ip == address.compressed
    assert parsed.host_key == key
    assert parsed.id == f"{address.compressed}-{cloud}-0"


@given(bk_host_id=host_ids)
def test_int_digit_string_and_full_string_parse_to_the_same_host_id(bk_host_id):
    expected = host_instance_id(bk_host_id=bk_host_id)

    as_int = parse_instance_id(bk_host_id)
    as_digits = parse_instance_id(str(bk_host_id))
    as_full = parse_instance_id(f"host|instance|host|{bk_host_id}")

    assert as_int == as_digits == as_full == expected
    assert as_int.bk_host_id == bk_host_id
    assert as_int.host_key is None
    assert str(as_int) == f"host|instance|host|{bk_host_id}"


_VALID_INPUTS = st.one_of(
    host_ids,
    host_ids.map(str),
    host_ids.map(lambda n: f"  HOST | Instance | host | {n:0>20} "),
    st.builds(lambda a, c, s: f"host|instance|host|{a}-{c}-{s}", st.ip_addresses(), ids_ge0, ids_ge0),
    st.builds(lambda n: f"service|instance|service|{n}", ids_ge0),
    st.builds(
        lambda o, nt, t, n: f"{o}|{nt}|{t}|{n}",
        st.sampled_from(list(ObjectType)),
        st.sampled_from([NodeType.TOPO, NodeType.SERVICE_TEMPLATE, NodeType.SET_TEMPLATE]),
        st.from_regex(r"[A-Za-z0-9_]{1,64}", fullmatch=True),
        ids_ge0,
    ),
)


@given(raw=_VALID_INPUTS)
def test_parse_of_str_of_parse_is_a_fixed_point(raw):
    parsed = parse_instance_id(raw)
    assert parse_instance_id(str(parsed)) == parsed
    assert str(parse_instance_id(str(parsed))) == str(parsed)


@given(raw=st.text())
def test_arbitrary_text_parses_or_raises_invalid_input_on_instance_id(raw):
    try:
        parsed = parse_instance_id(raw)
    except InvalidInput as exc:
        assert "instance_id" in exc.problems
        assert len(exc.message) <= 300
    else:
        assert isinstance(parsed, InstanceId)
        assert parse_instance_id(str(parsed)) == parsed


@given(
    raw=st.lists(
        st.one_of(st.sampled_from(["host", "service", "instance", "topo", "module", "-", "|", ":", "0"]), st.text()),
        max_size=8,
    ).map("".join)
)
def test_near_miss_text_parses_or_raises_invalid_input(raw):
    try:
        parse_instance_id(raw)
    except InvalidInput as exc:
        assert "instance_id" in exc.problems


@given(raw=st.integers())
def test_any_integer_parses_as_a_host_id_or_raises_invalid_input(raw):
    try:
        parsed = parse_instance_id(raw)
    except InvalidInput as exc:
        assert not 0 < raw <= MAX_ID
        assert "bk_host_id" in exc.problems["instance_id"]
    else:
        assert parsed.bk_host_id == raw


# --------------------------------------------------------------------------------- table: valid


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(35, "host|instance|host|35", id="int_is_bk_host_id"),
        pytest.param("35", "host|instance|host|35", id="digit_string_is_bk_host_id"),
        pytest.param(" 35 ", "host|instance|host|35", id="digit_string_is_stripped"),
        pytest.param("+35", "host|instance|host|35", id="plus_signed_digit_string_is_bk_host_id"),
        pytest.param("007", "host|instance|host|7", id="bare_leading_zeros_normalised"),
        pytest.param("host|instance|host|007", "host|instance|host|7", id="full_leading_zeros_normalised"),
        pytest.param("host|instance|host|127.0.0.1-0-0", "host|instance|host|127.0.0.1-0-0", id="ipv4_key"),
        pytest.param("HOST|INSTANCE|host|127.10.0.1-2-0", "host|instance|host|127.10.0.1-2-0", id="upper_case_types"),
        pytest.param(
            "host|instance|host|0000:0000:0000:0000:0000:0000:0000:0001-3-0",
            "host|instance|host|::1-3-0",
            id="ipv6_key_compressed",
        ),
        pytest.param(
            "host|instance|host|127.10.0.1-00-0", "host|instance|host|127.10.0.1-0-0", id="cloud_id_normalised"
        ),
        pytest.param("service|instance|service|123", "service|instance|service|123", id="service_instance"),
        pytest.param("host|topo|module|33", "host|topo|module|33", id="topo_node"),
        pytest.param(
            "service|service_template|service_template|5",
            "service|service_template|service_template|5",
            id="service_template_node",
        ),
        pytest.param("host|set_template|set_template|0", "host|set_template|set_template|0", id="set_template_0"),
    ],
)
def test_valid_inputs_parse_to_their_canonical_string(raw, expected):
    assert str(parse_instance_id(raw)) == expected


@pytest.mark.parametrize(
    ("raw", "bk_host_id", "host_key"),
    [
        pytest.param("host|instance|host|35", 35, None, id="host_id_form"),
        pytest.param("host|instance|host|127.2.3.4-5-0", None, HostKey(ip="127.2.3.4", bk_cloud_id=5), id="key_form"),
        pytest.param("service|instance|service|35", None, None, id="service_is_not_a_host"),
        pytest.param("host|topo|host|35", None, None, id="topo_node_is_not_a_host_instance"),
    ],
)
def test_bk_host_id_and_host_key_only_for_host_instances(raw, bk_host_id, host_key):
    parsed = parse_instance_id(raw)
    assert parsed.bk_host_id == bk_host_id
    assert parsed.host_key == host_key


# ------------------------------------------------------------------------------- table: invalid


@pytest.mark.parametrize(
    ("raw", "mentions"),
    [
        pytest.param("host|x", ["4 parts", "got 2"], id="two_parts"),
        pytest.param("host|instance|host", ["4 parts", "got 3"], id="three_parts"),
        pytest.param("host|instance|host|1|2", ["4 parts", "got 5"], id="five_parts"),
        pytest.param("abc", ["4 parts", "got 1"], id="one_word"),
        pytest.param("cluster|instance|host|1", ["object_type", "'cluster'", "host, service"], id="bad_object_type"),
        pytest.param("|instance|host|1", ["object_type", "''"], id="empty_object_type"),
        pytest.param("host|node|host|1", ["node_type", "'node'", "instance"], id="bad_node_type"),
        pytest.param("host||host|1", ["node_type"], id="empty_node_type"),
        pytest.param("host|topo|mod-ule|1", ["type", "'mod-ule'", "bk_obj_id"], id="type_with_dash"),
        pytest.param("host|topo||1", ["type", "''"], id="empty_type"),
        pytest.param("host|topo|" + "m" * 65 + "|1", ["type", "bk_obj_id"], id="type_longer_than_64"),
        pytest.param("host|instance|service|1", ["type", "'service'", "'host'"], id="host_instance_of_type_service"),
        pytest.param("service|instance|host|1", ["type", "'host'", "'service'"], id="service_instance_of_type_host"),
        pytest.param("host|instance|host|", ["id must not be empty"], id="empty_id"),
        pytest.param("host|instance|host|  ", ["id must not be empty"], id="blank_id"),
        pytest.param(
            "host|instance|host|127.2.3.4",
            ["id", "'127.2.3.4'", "ip-bk_cloud_id-bk_supplier_id"],
            id="ip_without_cloud",
        ),
        pytest.param("host|instance|host|127.2.3.4-0", ["ip-bk_cloud_id-bk_supplier_id"], id="ip_without_supplier"),
        pytest.param(
            "host|instance|host|127.2.3.999-0-0", ["'127.2.3.999'", "not an IPv4 or IPv6 address"], id="bad_ipv4"
        ),
        pytest.param("host|instance|host|myhost-0-0", ["'myhost'", "not an IPv4 or IPv6 address"], id="hostname"),
        pytest.param("host|instance|host|gg::1-0-0", ["'gg::1'", "not an IPv4 or IPv6 address"], id="bad_ipv6"),
        pytest.param("host|instance|host|::1%lo-0-0", ["scope id"], id="ipv6_scope_id"),
        pytest.param("host|instance|host|127.2.3.4-x-0", ["bk_cloud_id", "non-negative integers"], id="bad_cloud"),
        pytest.param(
            "host|instance|host|127.2.3.4-0-y", ["bk_supplier_id", "non-negative integers"], id="bad_supplier"
        ),
        pytest.param(
            "host|instance|host|127.2.3.4-0\n-0",
            ["bk_cloud_id", "non-negative integers"],
            id="cloud_with_trailing_newline",
        ),
        pytest.param("host|instance|host|127.2.3.4--1-0", ["'127.2.3.4-'", "not an IPv4"], id="negative_cloud"),
        pytest.param("host|instance|host|0", ["bk_host_id", "'0'", "positive"], id="zero_host_id_full"),
        pytest.param("host|instance|host|-5", ["bk_host_id", "'-5'", "positive"], id="negative_host_id_full"),
        pytest.param("0", ["bk_host_id", "'0'", "positive"], id="zero_host_id_string"),
        pytest.param("000", ["bk_host_id", "'000'", "positive"], id="zeros_host_id_string"),
        pytest.param("-5", ["bk_host_id", "'-5'", "positive"], id="negative_host_id_string"),
        pytest.param(0, ["bk_host_id", "'0'", "positive"], id="zero_host_id_int"),
        pytest.param(-5, ["bk_host_id", "'-5'", "positive"], id="negative_host_id_int"),
        pytest.param(10**18, ["bk_host_id", "at most 18 digits"], id="host_id_int_of_19_digits"),
        pytest.param("1" * 19, ["bk_host_id", "at most 18 digits"], id="host_id_string_of_19_digits"),
        pytest.param("service|instance|service|abc", ["id", "'abc'", "must be an integer"], id="service_id_text"),
        pytest.param("host|topo|module|-1", ["id", "'-1'", "must be an integer"], id="topo_id_negative"),
        pytest.param("", ["must not be blank"], id="empty"),
        pytest.param("   \t\n", ["must not be blank"], id="whitespace_only"),
    ],
)
def test_malformed_input_raises_invalid_input_naming_the_wrong_part(raw, mentions):
    error = _parse_error(raw)
    problem = error.problems["instance_id"]
    for fragment in mentions:
        assert fragment in problem
    assert error.message == f"instance_id: {problem}"


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(True, id="true"),
        pytest.param(False, id="false"),
        pytest.param(35.0, id="float"),
        pytest.param(["host|instance|host|35"], id="list"),
        pytest.param(None, id="none"),
        pytest.param({"bk_host_id": 35}, id="dict"),
        pytest.param(b"35", id="bytes"),
    ],
)
def test_non_string_non_int_input_is_invalid_input(raw):
    problem = _parse_error(raw).problems["instance_id"]
    assert "must be a string" in problem
    assert "integer bk_host_id" in problem


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("x" * 100_000, id="huge_word"),
        pytest.param("|".join(["y" * 50_000] * 4), id="huge_object_type"),
        pytest.param("host|" + "n" * 50_000 + "|host|1", id="huge_node_type"),
        pytest.param("host|topo|" + "t" * 50_000 + "|1", id="huge_type"),
        pytest.param("host|instance|host|" + "9" * 50_000, id="huge_host_id_string"),
        pytest.param("host|instance|host|" + "1" * 50_000 + "-0-0", id="huge_host_key"),
        pytest.param("host|instance|host|127.2.3.4-" + "a" * 50_000 + "-0", id="huge_cloud"),
        pytest.param("service|instance|service|" + "z" * 50_000, id="huge_service_id"),
        pytest.param("9" * 50_000, id="huge_digit_string"),
        pytest.param(10**5000, id="huge_int"),
        pytest.param(-(10**5000), id="huge_negative_int"),
    ],
)
def test_huge_input_message_is_cut(raw):
    error = _parse_error(raw)
    assert len(error.message) <= 300
    assert "..." in error.message or "huge" in error.message


# ------------------------------------------------------------------------------------------ HostKey


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(("127.10.0.1", 0), "127.10.0.1-0-0", id="supplier_defaults_to_0"),
        pytest.param((" 127.10.0.1 ", 2, 5), "127.10.0.1-2-5", id="ip_is_stripped"),
        pytest.param(("0:0:0:0:0:0:0:1", 1), "::1-1-0", id="ipv6_compressed"),
        pytest.param(
            ("0:0:0:0:0:FFFF:7F0A:1", 1),
            # the standard library's text for it: ::ffff:7f0a:1, or ::ffff:127.10.0.1 from Python 3.13 on
            f"{ipaddress.IPv6Address('::ffff:127.10.0.1')}-1-0",
            id="ipv6_compressed_lower_case",
        ),
    ],
)
def test_host_key_of_normalises_and_formats_ip_cloud_supplier(args, expected):
    assert str(HostKey.of(*args)) == expected


@pytest.mark.parametrize(
    ("args", "field", "mentions"),
    [
        pytest.param(("not-an-ip", 0), "ip", "not an IPv4 or IPv6 address", id="bad_ip"),
        pytest.param(("::1%a-b", 0), "ip", "scope id", id="ipv6_scope_id_with_dash"),
        pytest.param(("::1%a|b", 0), "ip", "scope id", id="ipv6_scope_id_with_pipe"),
        pytest.param(("127.10.0.1", -1), "bk_cloud_id", ">= 0", id="negative_cloud"),
        pytest.param(("127.10.0.1", 0, -1), "bk_cloud_id", ">= 0", id="negative_supplier"),
        pytest.param(("127.10.0.1", 10**18), "bk_cloud_id", "18 digits", id="cloud_too_large_to_parse_back"),
    ],
)
def test_host_key_of_rejects_bad_parts(args, field, mentions):
    with pytest.raises(InvalidInput) as excinfo:
        HostKey.of(*args)
    assert mentions in excinfo.value.problems[field]


def test_host_instance_id_needs_an_id_or_a_key():
    with pytest.raises(ValueError, match="bk_host_id or host_key"):
        host_instance_id()


def test_host_instance_id_prefers_bk_host_id_over_host_key():
    key = HostKey.of("127.10.0.1", 0)
    assert str(host_instance_id(bk_host_id=9, host_key=key)) == "host|instance|host|9"
