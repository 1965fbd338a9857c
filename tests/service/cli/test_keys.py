"""`framecast keys` (service/cli/keys.py): a new key's secret printed once and only its SHA-256
written, atomically, never making a file world-readable; list and remove; what it writes is what
a server reads."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

from service.auth.keys import parse_keys_file

ROOT = Path(__file__).resolve().parents[3]


def keys(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "service.cli", "keys", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


def test_a_new_key_prints_its_secret_once_and_writes_only_its_hash(tmp_path):
    f = tmp_path / "keys.toml"
    done = keys("new", "--id", "alice", "--scopes", "infer,stream", "--max-streams", "4",
                "--file", str(f))  # fmt: skip
    assert done.returncode == 0, done.stderr
    secret = done.stdout.strip()
    assert secret.startswith("fc_") and len(secret) >= 40 and "\n" not in secret
    text = f.read_text()
    assert secret not in text and hashlib.sha256(secret.encode()).hexdigest() in text
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    (p,) = parse_keys_file(text).values()  # what a server reads
    assert p.id == "alice" and p.scopes == {"infer", "stream"} and p.limits.max_streams == 4
    again = keys("new", "--id", "bob", "--scopes", "admin", "--file", str(f))
    assert again.returncode == 0 and again.stdout.strip() != secret
    assert {q.id for q in parse_keys_file(f.read_text()).values()} == {"alice", "bob"}


def test_an_existing_file_keeps_its_mode_and_nothing_is_left_beside_it(tmp_path):
    f = tmp_path / "keys.toml"
    f.write_text("# mine\n")
    f.chmod(0o640)
    assert keys("new", "--id", "a", "--scopes", "infer", "--file", str(f)).returncode == 0
    assert stat.S_IMODE(f.stat().st_mode) == 0o640  # group-readable as it was; never o+r
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.toml"]


def test_a_missing_folder_is_made_for_its_owner_only(tmp_path):
    f = tmp_path / "etc" / "framecast" / "keys.toml"
    done = keys("new", "--id", "a", "--scopes", "infer", "--file", str(f))
    assert done.returncode == 0, done.stderr
    assert "made the folder" in done.stderr and parse_keys_file(f.read_text())
    assert stat.S_IMODE(f.parent.stat().st_mode) == 0o700 and sorted(os.listdir(f.parent)) == [
        "keys.toml"
    ]


def test_bad_asks_are_refused_and_change_nothing(tmp_path):
    f = tmp_path / "keys.toml"
    keys("new", "--id", "a", "--scopes", "infer", "--file", str(f))
    before = f.read_text()
    for args in (
        ("new", "--id", "a", "--scopes", "infer"),  # the id is taken
        ("new", "--id", "b c", "--scopes", "infer"),
        ("new", "--id", "b", "--scopes", "infer,root"),
        ("remove", "--id", "nobody"),
    ):
        done = keys(*args, "--file", str(f))
        assert done.returncode == 2 and "framecast keys: error:" in done.stderr, args
        assert done.stdout == ""  # no secret printed for a key not written
    assert f.read_text() == before


def test_list_and_remove(tmp_path):
    f = tmp_path / "keys.toml"
    keys("new", "--id", "a", "--scopes", "infer", "--rate-per-s", "5", "--file", str(f))
    keys("new", "--id", "b", "--scopes", "admin", "--file", str(f))
    listed = keys("list", "--file", str(f)).stdout.splitlines()
    assert listed == ["a\tinfer\trate_per_s=5.0", "b\tadmin\t-"]
    assert keys("remove", "--id", "a", "--file", str(f)).returncode == 0
    assert [p.id for p in parse_keys_file(f.read_text()).values()] == ["b"]
