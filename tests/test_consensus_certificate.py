"""A commit certificate names exactly what is wrong with it: each refusal's message, in
the binary form, the JSON form and at verification (what `platform consensus verify` prints)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from platform_cli.core import canonical
from platform_cli.core.consensus import certificate as certs
from platform_cli.core.consensus.messages import value_id
from platform_cli.identity import verify_signature
from tests.consensus_helpers import NETWORK, keys, precommit, prevote, validator_set

K = keys(4)
VSET = validator_set(K)
VALUE = {"height": 3, "note": "decided"}
VID = value_id(VALUE)


def cert_of(signers: list[Any], value: str = VID, round_: int = 0, height: int = 3) -> certs.Certificate:
    return certs.build(
        NETWORK, height, round_, value, VSET, [precommit(k, height, round_, VSET, value) for k in signers]
    )


def problem(call: Any, *args: Any, **kw: Any) -> str:
    with pytest.raises(certs.CertificateError) as info:
        call(*args, **kw)
    return str(info.value)


# ---------------------------------------------------------------- the binary form


def test_decode_refusals() -> None:
    good = cert_of(K[:3]).to_canonical()
    assert problem(certs.decode, b"\x18\x01").startswith("certificate is not canonical CBOR: ")
    shape = "a certificate is a version 1 map with fields ['genesis', 'height', 'netuid', 'precommits', 'round', 'set', 'set_block', 'v', 'value']"
    assert problem(certs.decode, canonical.encode([1])) == shape
    assert problem(certs.decode, canonical.encode({**good, "v": 2})) == shape
    assert problem(certs.decode, canonical.encode({**good, "extra": 1})) == shape
    wire = "precommits must be a list of envelopes in wire form"
    assert problem(certs.decode, canonical.encode({**good, "precommits": "x"})) == wire
    assert problem(certs.decode, canonical.encode({**good, "precommits": ["x"]})) == wire
    broken = problem(certs.decode, canonical.encode({**good, "precommits": [b"\x00"]}))
    assert broken == "a precommit is not an envelope: envelope fields are not the expected set"
    assert certs.decode(canonical.encode(good)) == cert_of(K[:3])


@pytest.mark.parametrize(
    ("field", "bad", "message"),
    [
        ("height", -1, "height -1 is not a non-negative integer"),
        ("height", True, "height True is not a non-negative integer"),
        ("round", "0", "round '0' is not a non-negative integer"),
        ("set_block", -5, "set_block -5 is not a non-negative integer"),
        ("value", "AB" * 32, "value_id is not 64 lowercase hex digits"),
        ("set", "ab" * 31, "set_id is not 64 lowercase hex digits"),
        ("netuid", "100", "network netuid must be an integer and genesis a string"),
        ("genesis", 7, "network netuid must be an integer and genesis a string"),
    ],
)
def test_decoded_fields_are_checked(field: str, bad: Any, message: str) -> None:
    doc = {**cert_of(K[:3]).to_canonical(), field: bad}
    assert problem(certs.decode, canonical.encode(doc)) == message


# ---------------------------------------------------------------- the JSON form


def test_json_refusals() -> None:
    good = cert_of(K[:3]).to_json()
    assert problem(certs.from_json, []) == "a certificate is a JSON object"
    without = {k: v for k, v in good.items() if k not in ("height", "round")}
    assert problem(certs.from_json, {**without, "zz": 1, "aa": 2}) == (
        "certificate fields: missing 'height', missing 'round', unexpected 'aa', unexpected 'zz'"
    )
    assert problem(certs.from_json, without) == "certificate fields: missing 'height', missing 'round'"
    assert problem(certs.from_json, {**good, "zz": 1}) == "certificate fields: unexpected 'zz'"
    assert problem(certs.from_json, {**good, "v": 9}) == "certificate version 9 is not 1"
    assert problem(certs.from_json, {**good, "network": {"netuid": 100}}) == (
        "network must be an object with 'netuid' and 'genesis'"
    )
    assert problem(certs.from_json, {**good, "network": [100, "g"]}) == (
        "network must be an object with 'netuid' and 'genesis'"
    )
    assert (
        problem(certs.from_json, {**good, "precommits": {}})
        == "precommits must be a list of signed envelopes"
    )
    bad_second = [good["precommits"][0], {**good["precommits"][1], "signature": "zz"}]
    assert problem(certs.from_json, {**good, "precommits": bad_second}) == (
        "precommit 1: signature must be 128 lowercase hex digits"
    )
    assert problem(certs.from_json, {**good, "set_id": "x"}) == "set_id is not 64 lowercase hex digits"
    cert, value = certs.from_json({**good, "value": VALUE})
    assert cert == cert_of(K[:3]) and value == VALUE
    assert certs.from_json(good)[1] is None


# ---------------------------------------------------------------- verification


def test_verify_names_the_set_and_the_value() -> None:
    cert = cert_of(K[:3])
    other = validator_set(K, block=7)
    assert problem(certs.verify, cert, other, verify_signature) == (
        f"the certificate was signed under validator set {VSET.set_id[:16]}… (block {VSET.block}); "
        f"the given set is {other.set_id[:16]}… (block 7)"
    )
    wrong = {"height": 3, "note": "another"}
    assert problem(certs.verify, cert, VSET, verify_signature, value=wrong) == (
        f"the value's id is {value_id(wrong)[:16]}…, the certificate decides {VID[:16]}…"
    )
    assert problem(certs.verify, cert, VSET, verify_signature, value={"x": 1.5}) == (
        "the value is not canonical: $[1].x: floats are not allowed (use fixed-point integers)"
    )
    certs.verify(cert, VSET, verify_signature, value=VALUE)


def with_precommits(*envelopes: Any) -> certs.Certificate:
    return dataclasses.replace(cert_of(K[:3]), precommits=tuple(envelopes))


def test_verify_names_the_precommit_at_fault() -> None:
    good = cert_of(K[:3]).precommits
    first = f"precommit 0 ({good[0].signer})"
    elsewhere = dataclasses.replace(good[0], network=dataclasses.replace(NETWORK, netuid=101))
    assert problem(certs.verify, with_precommits(elsewhere), VSET, verify_signature) == (
        f"{first}: signed for another network (netuid 101)"
    )
    prevoted = prevote(K[0], 3, 0, VSET, VID)
    assert problem(certs.verify, with_precommits(prevoted), VSET, verify_signature) == (
        f"precommit 0 ({prevoted.signer}): kind 'consensus.prevote' is not 'consensus.precommit'"
    )
    garbled = dataclasses.replace(good[0], body={"height": 3})
    assert problem(certs.verify, with_precommits(garbled), VSET, verify_signature).startswith(f"{first}: ")
    nil = precommit(K[0], 3, 0, VSET, None)
    assert problem(certs.verify, with_precommits(nil), VSET, verify_signature) == (
        f"precommit 0 ({nil.signer}): votes for height 3 round 0 value nil, not this certificate's decision"
    )
    late = precommit(K[0], 3, 1, VSET, VID)
    assert problem(certs.verify, with_precommits(late), VSET, verify_signature) == (
        f"precommit 0 ({late.signer}): votes for height 3 round 1 value {VID[:16]}, not this certificate's decision"
    )
    second = f"precommit 1 ({good[0].signer})"
    assert problem(certs.verify, with_precommits(good[0], good[0]), VSET, verify_signature) == (
        f"{second}: the signer appears twice"
    )
    outsider = precommit(keys(1, seed=8)[0], 3, 0, VSET, VID)
    assert problem(certs.verify, with_precommits(outsider), VSET, verify_signature) == (
        f"precommit 0 ({outsider.signer}): the signer is not in the validator set"
    )
    forged = dataclasses.replace(good[1], signature=bytes(64))
    assert problem(certs.verify, with_precommits(good[0], forged), VSET, verify_signature) == (
        f"precommit 1 ({forged.signer}): the signature does not verify"
    )
    short = dataclasses.replace(good[1], signature=good[1].signature[:63])
    assert problem(certs.verify, with_precommits(good[0], short), VSET, verify_signature) == (
        f"precommit 1 ({short.signer}): the signature does not verify"
    )


def test_verify_states_the_power_short_of_a_quorum() -> None:
    assert problem(certs.verify, cert_of(K[:2]), VSET, verify_signature) == (
        "the 2 signers hold 50.00% of the stake and are 2 of 4 validators: a quorum needs more "
        "than 2/3 of the stake and at least 3 validators"
    )
    assert problem(certs.verify, cert_of([]), VSET, verify_signature) == (
        "the 0 signers hold 0.00% of the stake and are 0 of 4 validators: a quorum needs more "
        "than 2/3 of the stake and at least 3 validators"
    )
    heavy = validator_set(K, stakes=[1, 1, 1, 997])
    light = certs.build(NETWORK, 3, 0, VID, heavy, [precommit(k, 3, 0, heavy, VID) for k in K[:3]])
    assert problem(certs.verify, light, heavy, verify_signature) == (
        "the 3 signers hold 0.30% of the stake and are 3 of 4 validators: a quorum needs more "
        "than 2/3 of the stake and at least 3 validators"
    )
