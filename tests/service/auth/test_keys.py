"""The keys a server accepts (service/auth/keys.py): the keys file's rules, FRAMECAST_API_KEYS as
keys with every scope, and rotation: the file read again when it changes, with no restart."""

from __future__ import annotations

import hashlib
import logging
import os
import time

import pytest

from service.auth.keys import KeyRing, KeysFileError, parse_keys_file
from service.config import Settings
from service.errors import Forbidden, Unauthorized


def sha(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def entry(kid: str, secret: str, scopes: str = '"infer", "stream"', extra: str = "") -> str:
    return f'[[keys]]\nid = "{kid}"\nsha256 = "{sha(secret)}"\nscopes = [{scopes}]\n{extra}\n'


def test_a_keys_file_gives_each_key_its_scopes_and_limits():
    table = parse_keys_file(
        entry("alice", "a-secret", extra="max_streams = 2\nrate_per_s = 2.5\n")
        + entry("root", "r-secret", '"admin"')
    )
    by_id = {p.id: p for p in table.values()}
    assert by_id["alice"].scopes == {"infer", "stream"} and not by_id["alice"].admin
    assert by_id["alice"].limits.max_streams == 2 and by_id["alice"].limits.rate_per_s == 2.5
    assert by_id["root"].admin and by_id["root"].can("stream")  # admin may do what all may
    assert not by_id["alice"].can("admin") and not by_id["alice"].can("evaluate")


@pytest.mark.parametrize(
    "text, words",
    [
        ("not toml [", "not valid TOML"),
        ('[[keys]]\nid = "a b"\nsha256 = "00"\nscopes = ["infer"]\n', "id must be"),
        ('[[keys]]\nid = "a"\nsha256 = "zz"\nscopes = ["infer"]\n', "64 hex digits"),
        (entry("a", "s", '"infer", "root"'), "scopes must be"),
        (entry("a", "s", extra="max_streams = 0"), "above 0"),
        (entry("a", "s", extra="max_streams = 1.5"), "whole number"),
        (entry("a", "s") + entry("a", "t"), "listed twice"),
        (entry("a", "s") + entry("b", "s"), "the same sha256 as key 'a'"),
        ('[keys]\nid = "a"\n', "[[keys]] tables"),
    ],
)
def test_a_bad_keys_file_is_refused_naming_the_fault(text, words):
    with pytest.raises(KeysFileError) as e:
        parse_keys_file(text, "keys.toml")
    assert words in str(e.value) and "keys.toml" in str(e.value)


def test_a_field_framecast_does_not_know_is_ignored_saying_so(caplog):
    (p,) = parse_keys_file(entry("a", "s", extra="max_stream = 2\nowner = 'x'"), "k.toml").values()
    assert p.id == "a" and p.limits.max_streams is None
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("'max_stream'" in m and "ignored" in m and "k.toml" in m for m in said), said


def test_env_keys_have_every_scope_and_are_named_by_place(tmp_path):
    ring = KeyRing(Settings(models_dir=tmp_path, api_keys="one-key, two-key"))
    p = ring.authenticate(b"Bearer two-key")
    assert p.id == "env-2" and p.admin and p.source == "env"
    with pytest.raises(Forbidden):
        ring.authenticate(b"Bearer three-key")
    with pytest.raises(Unauthorized):
        ring.authenticate(None)
    with pytest.raises(Unauthorized):
        ring.authenticate(b"Basic b25lLWtleQ==")
    assert not KeyRing(Settings(models_dir=tmp_path)).enabled


def test_a_server_with_a_bad_keys_file_does_not_start(tmp_path):
    path = tmp_path / "keys.toml"
    path.write_text(entry("a", "s", '"everything"'))
    with pytest.raises(KeysFileError, match="scopes must be"):
        KeyRing(Settings(models_dir=tmp_path, api_keys_file=path))
    with pytest.raises(KeysFileError, match="cannot be read"):
        KeyRing(Settings(models_dir=tmp_path, api_keys_file=tmp_path / "absent.toml"))


def test_a_changed_file_is_read_again_without_a_restart(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="framecast")
    path = tmp_path / "keys.toml"
    path.write_text(entry("alice", "alice-secret") + entry("bob", "bob-secret"))
    ring = KeyRing(Settings(models_dir=tmp_path, api_keys_file=path))
    ring.start()
    try:
        assert ring.check(b"bob-secret").id == "bob"
        new = tmp_path / "keys.new"
        new.write_text(entry("alice", "alice-secret") + entry("carol", "carol-secret"))
        os.replace(new, path)  # how an editor or `framecast keys` writes it
        deadline = time.monotonic() + 10
        while True:  # the removed key is refused within seconds
            try:
                ring.check(b"bob-secret")
            except Forbidden:
                break
            assert time.monotonic() < deadline, "bob's key was still accepted after 10 s"
            time.sleep(0.05)
        assert ring.check(b"carol-secret").id == "carol"
        assert ring.check(b"alice-secret").id == "alice"
    finally:
        ring.stop()
    line = next(r.getMessage() for r in caplog.records if "keys file reloaded" in r.getMessage())
    assert "added: carol" in line and "removed: bob" in line and "secret" not in line


def test_a_file_that_no_longer_parses_keeps_the_keys_and_says_why(tmp_path, caplog):
    path = tmp_path / "keys.toml"
    path.write_text(entry("alice", "alice-secret"))
    ring = KeyRing(Settings(models_dir=tmp_path, api_keys_file=path))
    path.write_text("[[keys]]\nid = ")
    assert not ring.reload("SIGHUP")
    assert ring.check(b"alice-secret").id == "alice"
    assert any("not reloaded (SIGHUP)" in r.getMessage() for r in caplog.records)
    path.write_text(entry("alice", "alice-secret", '"admin"'))
    assert ring.reload("SIGHUP") and ring.check(b"alice-secret").admin
