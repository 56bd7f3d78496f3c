"""The agent package: what it holds, that it is reproducible byte for byte, and which versions it accepts."""

from __future__ import annotations

import gzip
import hashlib
import io
import stat
import tarfile

import pytest

from nodeops.agent import package
from nodeops.agent.package import BUNDLED_VERSION, BuiltPackage, build_package, package_bytes, validate_version

SCRIPT = package.AGENT_SCRIPT_PATH


def members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return tar.getmembers()


def read_member(data: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        handle = tar.extractfile(name)
        assert handle is not None
        return handle.read()


def test_package_holds_the_script_and_its_version_under_one_folder(tmp_path):
    built = build_package("1.2.3", tmp_path)

    data = built.path.read_bytes()
    assert [(m.name, m.type) for m in members(data)] == [
        ("nodeops-agent", tarfile.DIRTYPE),
        ("nodeops-agent/VERSION", tarfile.REGTYPE),
        ("nodeops-agent/nodeops_agent.py", tarfile.REGTYPE),
    ]
    assert read_member(data, "nodeops-agent/VERSION") == b"1.2.3\n"
    assert read_member(data, "nodeops-agent/nodeops_agent.py") == SCRIPT.read_bytes()


def test_entries_have_fixed_owner_time_and_modes(tmp_path):
    entries = {m.name: m for m in members(build_package("1.2.3", tmp_path).path.read_bytes())}

    assert {stat.S_IMODE(m.mode) for m in entries.values()} >= {0o755, 0o644}
    assert stat.S_IMODE(entries["nodeops-agent/nodeops_agent.py"].mode) == 0o755
    assert stat.S_IMODE(entries["nodeops-agent/VERSION"].mode) == 0o644
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in entries.values()} == {
        (0, 0, "root", "root", package.PACKAGE_MTIME)
    }


def test_build_returns_the_registered_facts(tmp_path):
    built = build_package("1.2.3", tmp_path / "packages" / "new")

    data = built.path.read_bytes()
    assert built == BuiltPackage(
        path=tmp_path / "packages" / "new" / "nodeops-agent-1.2.3.tar.gz",
        version="1.2.3",
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
    )
    assert sorted(p.name for p in built.path.parent.iterdir()) == ["nodeops-agent-1.2.3.tar.gz"]  # no temp file


def test_building_twice_gives_the_same_bytes(tmp_path):
    first = build_package("0.3.0", tmp_path / "a")
    second = build_package("0.3.0", tmp_path / "b")
    again = build_package("0.3.0", tmp_path / "a")

    assert first.sha256 == second.sha256 == again.sha256
    assert first.path.read_bytes() == second.path.read_bytes()


def test_gzip_header_carries_no_time_or_name():
    data = package_bytes("0.3.0")

    assert data[:2] == b"\x1f\x8b"
    assert data[4:8] == b"\0\0\0\0"  # MTIME
    assert not data[3] & 0x08  # FLG.FNAME unset
    assert gzip.decompress(data)


def test_versions_differ_only_in_their_version_file():
    one, two = package_bytes("0.3.0"), package_bytes("0.4.0")

    assert one != two
    assert read_member(one, "nodeops-agent/nodeops_agent.py") == read_member(two, "nodeops-agent/nodeops_agent.py")


def test_package_extracts_under_the_strict_data_filter(tmp_path):
    with tarfile.open(build_package("0.3.0", tmp_path).path) as tar:
        tar.extractall(tmp_path / "out", filter="data")

    script = tmp_path / "out" / "nodeops-agent" / "nodeops_agent.py"
    assert script.stat().st_mode & stat.S_IXUSR


@pytest.mark.parametrize(
    "version", ["0.1.0", "1.2", "1.2.3.4", "10.20.30", "1.2.3-rc1", "1.2.3.post1", "2.0-beta", BUNDLED_VERSION]
)
def test_accepts_dotted_versions_with_an_optional_suffix(version):
    assert validate_version(version) == version
    assert package.package_filename(version) == f"nodeops-agent-{version}.tar.gz"


@pytest.mark.parametrize(
    "version",
    [
        "",
        "1",
        "v1.2.3",
        "1.2.3.4.5.6",
        "1..2",
        "1.2.",
        "1.2-",
        "1.2.3-rc-1",
        "1.2.3-rc/1",
        "../1.2",
        "1.2/../../x",
        "1.2.3\n",
        " 1.2",
        "1.2 ",
        "1.2.3-ünï",
        "1." + "9" * 63,
    ],
)
def test_rejects_other_versions_saying_what_is_accepted(tmp_path, version):
    with pytest.raises(ValueError, match=r"must be 2 to 4 dot-separated numbers") as raised:
        build_package(version, tmp_path)

    assert repr(version) in str(raised.value)
    assert list(tmp_path.iterdir()) == []


def test_bundled_version_is_a_valid_version():
    assert validate_version(BUNDLED_VERSION) == BUNDLED_VERSION
