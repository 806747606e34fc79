"""Every name, key and topic pattern matches the whole string.

``re.match`` with a ``$`` anchor accepts a final newline, and ``\\d`` accepts any Unicode
digit, so "sort\\n" or a topic spelled with Arabic-Indic digits would pass as another
name's twin: each check below refuses such a near-copy of a valid value.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from platform_cli.core import canonical, dhtrec, gossip
from platform_cli.core import envelope as env
from platform_cli.core.consensus import messages
from platform_cli.core.consensus import weights as wt
from platform_cli.errors import UsageError
from platform_cli.identity import KeyStore
from platform_cli.state.marker import StateDamaged, marker_path, read_marker

OWNER = "5DVH4ASWcfJ5cUE31CtsCvoE78wisVsJRXagswAReC6zq33M"
HEX = "ab" * 32
SUFFIXES = ["\n", "\r\n", " ", "\x00"]


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_key_names(tmp_path: Path, suffix: str) -> None:
    store = KeyStore(tmp_path)
    assert store.path("alice").name == "alice.json"
    with pytest.raises(UsageError, match="invalid"):
        store.path("alice" + suffix)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_state_marker_id(tmp_path: Path, suffix: str) -> None:
    marker_path(tmp_path).write_text(json.dumps({"state_id": "0" * 32, "created_ms": 1}))
    assert read_marker(tmp_path) is not None
    marker_path(tmp_path).write_text(json.dumps({"state_id": "0" * 32 + suffix, "created_ms": 1}))
    with pytest.raises(StateDamaged, match="garbled"):
        read_marker(tmp_path)


@pytest.mark.parametrize("key", ["/sub/" + HEX, f"/eval/{OWNER}/scores", f"/ckpt/{OWNER}/epoch-1"])
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_dht_keys(key: str, suffix: str) -> None:
    """A near-copy of a key must not reach the same compact key (or any key) as the original."""
    compact = dhtrec.dht_key(key)
    assert dhtrec.compact_namespace(compact) == key.split("/")[1]
    assert dhtrec.compact_namespace(compact + suffix) is None
    for bad in (key + suffix, compact + suffix):
        with pytest.raises(dhtrec.RecordError):
            dhtrec.dht_key(bad)
    assert dhtrec.with_owner("/eval/scores" + suffix, OWNER) == "/eval/scores" + suffix


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_consensus_names(suffix: str) -> None:
    assert messages.is_hex64(HEX)
    assert not messages.is_hex64(HEX + suffix)
    report_set = {"validator": OWNER, "epoch": 3, "reports": [["sort", "miner-hotkey", 5]]}
    assert wt.report_set_from_canonical(report_set).entries
    report_set["reports"] = [["sort" + suffix, "miner-hotkey", 5]]
    with pytest.raises(wt.WeightsError, match="not a challenge id"):
        wt.report_set_from_canonical(report_set)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_envelope_kind(suffix: str) -> None:
    fields = {
        "v": 1,
        "netuid": 100,
        "genesis": "platform-devnet",
        "kind": "test.note" + suffix,
        "signer": OWNER,
        "scheme": "sr25519",
        "seq": 1,
        "ts": 1,
        "body": {},
        "sig": b"\x00" * 64,
    }
    with pytest.raises(env.EnvelopeError, match="not a valid kind name") as info:
        env.from_wire(canonical.encode(fields))
    assert info.value.reason == "malformed"
    fields["kind"] = "test.note"
    assert env.from_wire(canonical.encode(fields)).kind == "test.note"


def test_gossip_topics() -> None:
    topic = gossip.topic_name(7, "consensus")
    assert gossip.parse_topic(topic) == (7, "consensus")
    for bad in [topic + suffix for suffix in SUFFIXES] + [
        "/platform/\u0667/consensus/1",  # ARABIC-INDIC DIGIT SEVEN: int() reads it as 7
        "/platform/7/consensus/\u0661",
    ]:
        assert gossip.parse_topic(bad) is None
