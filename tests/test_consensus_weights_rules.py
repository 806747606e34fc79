"""The shapes a weights action, bundle and report set must have, each refusal with its
message; the checks of named bundles and stored report sets at their edges."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from platform_cli.core import envelope as env
from platform_cli.core.aggregation import SCORE_MAX, ChallengeShare
from platform_cli.core.consensus import weights as wt
from platform_cli.core.consensus.entry import embed
from platform_cli.core.consensus.messages import BUNDLE
from platform_cli.identity import verify_signature
from tests.consensus_helpers import NETWORK, keys, sign, validator_set

K = keys(4)
VSET = validator_set(K)
MINER = "5DVH4ASWcfJ5cUE31CtsCvoE78wisVsJRXagswAReC6zq33M"


def problem(call: Any, *args: Any) -> str:
    with pytest.raises(wt.WeightsError) as info:
        call(*args)
    return str(info.value)


# ---------------------------------------------------------------- report sets

GOOD_SET = {"validator": K[0].ss58, "epoch": 3, "reports": [["sort", MINER, 5], ["sort", "m2", SCORE_MAX]]}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"extra": 1}, "a report set is a map with 'validator', 'epoch' and 'reports'"),
        ({"reports": "x"}, f"reports must be a list of at most {wt.MAX_REPORTS}"),
        ({"reports": [["sort", MINER]]}, "a report is [challenge, miner, score]"),
        ({"reports": ["sort"]}, "a report is [challenge, miner, score]"),
        ({"reports": [[5, MINER, 1]]}, "challenge 5 is not a challenge id"),
        ({"reports": [["Sort", MINER, 1]]}, "challenge 'Sort' is not a challenge id"),
        ({"reports": [["sort", "", 1]]}, "miner '' is not a hotkey"),
        ({"reports": [["sort", "m" * 65, 1]]}, f"miner {'m' * 65!r} is not a hotkey"),
        ({"reports": [["sort", 7, 1]]}, "miner 7 is not a hotkey"),
        (
            {"reports": [["sort", MINER, SCORE_MAX + 1]]},
            f"score {SCORE_MAX + 1} is not an integer in 0..{SCORE_MAX}",
        ),
        ({"reports": [["sort", MINER, -1]]}, f"score -1 is not an integer in 0..{SCORE_MAX}"),
        ({"reports": [["sort", MINER, True]]}, f"score True is not an integer in 0..{SCORE_MAX}"),
        ({"validator": 5}, "validator is not a hotkey"),
        ({"epoch": -1}, f"epoch -1 is not an integer in 0..{2**63 - 1}"),
        ({"epoch": 2**63}, f"epoch {2**63} is not an integer in 0..{2**63 - 1}"),
        (
            {"reports": [["sort", MINER, 1], ["sort", MINER, 2]]},
            "a report set scores each (challenge, miner) once",
        ),
        (
            {"reports": [["sort", MINER, 1], ["sort", "m2", 1]][::-1]},
            "report set entries must be unique and sorted",
        ),
    ],
)
def test_report_set_refusals(changes: dict[str, Any], message: str) -> None:
    assert problem(wt.report_set_from_canonical, {**GOOD_SET, **changes}) == message


def test_report_sets_at_their_bounds() -> None:
    edges = {"reports": [["a", "m", 0], ["b" * 64, "m" * 64, SCORE_MAX]], "epoch": 2**63 - 1}
    parsed = wt.report_set_from_canonical({**GOOD_SET, **edges})
    assert parsed.entries == (("a", "m", 0), ("b" * 64, "m" * 64, SCORE_MAX))
    assert parsed.to_canonical() == {**GOOD_SET, **edges}
    assert [(r.validator, r.challenge, r.miner, r.score) for r in parsed.score_reports()] == [
        (K[0].ss58, "a", "m", 0),
        (K[0].ss58, "b" * 64, "m" * 64, SCORE_MAX),
    ]
    assert problem(wt.report_set_from_canonical, [GOOD_SET]) == (
        "a report set is a map with 'validator', 'epoch' and 'reports'"
    )


def test_a_report_set_is_built_sorted_and_its_root_binds_everything() -> None:
    built = wt.ReportSet.of(K[0].ss58, 3, [("sort", "m2", 1), ("sort", MINER, 5), ("sort", MINER, 5)])
    assert built.entries == (("sort", MINER, 5), ("sort", "m2", 1))
    roots = {
        built.root,
        dataclasses.replace(built, validator=K[1].ss58).root,
        dataclasses.replace(built, epoch=4).root,
        dataclasses.replace(built, entries=(("sort", MINER, 6), ("sort", "m2", 1))).root,
    }
    assert len(roots) == 4


# ---------------------------------------------------------------- bundles


def bundle_envelope(
    key: Any = K[0], body: Any = None, kind: str = BUNDLE, network: env.Network = NETWORK
) -> env.Envelope:
    body = {"epoch": 3, "root": "ab" * 32, "count": 2} if body is None else body
    return sign(key, kind, body, network=network)


@pytest.mark.parametrize(
    ("body", "kind", "message"),
    [
        (None, "consensus.prevote", f"kind 'consensus.prevote' is not {BUNDLE!r}"),
        ([1], BUNDLE, "a bundle body has exactly 'epoch', 'root' and 'count'"),
        ({"epoch": 3, "root": "ab" * 32}, BUNDLE, "a bundle body has exactly 'epoch', 'root' and 'count'"),
        ({"epoch": 3, "root": "AB" * 32, "count": 1}, BUNDLE, "bundle root is not 64 hex digits"),
        (
            {"epoch": -3, "root": "ab" * 32, "count": 1},
            BUNDLE,
            f"epoch -3 is not an integer in 0..{2**63 - 1}",
        ),
        (
            {"epoch": 3, "root": "ab" * 32, "count": wt.MAX_REPORTS + 1},
            BUNDLE,
            f"count {wt.MAX_REPORTS + 1} is not an integer in 0..{wt.MAX_REPORTS}",
        ),
    ],
)
def test_bundle_refusals(body: Any, kind: str, message: str) -> None:
    assert problem(wt.parse_bundle, bundle_envelope(body=body, kind=kind)) == message


def test_bundle_at_its_bounds() -> None:
    bundle = wt.parse_bundle(bundle_envelope(body={"epoch": 0, "root": "ab" * 32, "count": wt.MAX_REPORTS}))
    assert (bundle.epoch, bundle.root, bundle.count, bundle.signer) == (
        0,
        "ab" * 32,
        wt.MAX_REPORTS,
        K[0].ss58,
    )
    report_set = wt.ReportSet.of(K[1].ss58, 9, [("sort", MINER, 1)])
    assert wt.bundle_body(report_set) == {"epoch": 9, "root": report_set.root, "count": 1}


# ---------------------------------------------------------------- weights actions


def action_value(**changes: Any) -> dict[str, Any]:
    inputs = {
        "netuid": 100,
        "mechid": 0,
        "epoch": 3,
        "snapshot_block": 500,
        "challenges": [["sort", 500_000, 1]],
        "burn_uid": 0,
    }
    action = wt.WeightsAction(inputs, (bundle_envelope(),), ((0, 5), (3, 7)), "cd" * 32)
    return {**action.to_canonical(), **changes}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"extra": 1}, f"a weights action has exactly the fields {sorted(wt._ACTION_FIELDS)}"),
        ({"netuid": -1}, f"netuid -1 is not an integer in 0..{2**63 - 1}"),
        ({"mechid": "0"}, f"mechid '0' is not an integer in 0..{2**63 - 1}"),
        ({"epoch": True}, f"epoch True is not an integer in 0..{2**63 - 1}"),
        ({"snapshot_block": -5}, f"snapshot_block -5 is not an integer in 0..{2**63 - 1}"),
        ({"burn_uid": 65536}, "burn_uid 65536 is not an integer in 0..65535"),
        ({"challenges": "sort"}, "challenges must be a list of [id, emission_ppm, min_validators]"),
        ({"challenges": [["sort", 1]]}, "challenges must be a list of [id, emission_ppm, min_validators]"),
        ({"challenges": [[5, 1, 1]]}, "challenges must be a list of [id, emission_ppm, min_validators]"),
        ({"challenges": ["sort"]}, "challenges must be a list of [id, emission_ppm, min_validators]"),
        (
            {"challenges": [["sort", 10**6 + 1, 1]]},
            f"emission_ppm {10**6 + 1} is not an integer in 0..{10**6}",
        ),
        (
            {"challenges": [["sort", 1, 2**16 + 1]]},
            f"min_validators {2**16 + 1} is not an integer in 0..{2**16}",
        ),
        ({"bundles": "x"}, "bundles must be a list of signed bundle envelopes"),
        ({"weights": "x"}, "weights must be a list of [uid, units]"),
        ({"weights": [[0, 1, 2]]}, "weights must be a list of [uid, units]"),
        ({"weights": [5]}, "weights must be a list of [uid, units]"),
        ({"weights": [[65536, 1]]}, "uid 65536 is not an integer in 0..65535"),
        ({"weights": [[0, -1]]}, f"units -1 is not an integer in 0..{2**63 - 1}"),
        ({"weights": [[3, 1], [0, 1]]}, "weights must be sorted by uid, each uid once"),
        ({"weights": [[3, 1], [3, 2]]}, "weights must be sorted by uid, each uid once"),
        ({"vector_hash": "CD" * 32}, "vector_hash is not 64 hex digits"),
    ],
)
def test_weights_action_refusals(changes: dict[str, Any], message: str) -> None:
    assert problem(wt.parse_action, action_value(**changes)) == message


def test_weights_action_at_its_bounds() -> None:
    edges = {
        "burn_uid": None,
        "challenges": [["sort", 10**6, 2**16], ["x", 0, 0]],
        "weights": [[0, 0], [65535, 2**63 - 1]],
    }
    action = wt.parse_action(action_value(**edges))
    assert action.inputs["burn_uid"] is None
    assert action.weights == ((0, 0), (65535, 2**63 - 1))
    assert (action.epoch, action.mechid, action.vector_hash) == (3, 0, "cd" * 32)
    assert action.to_canonical() == action_value(**edges)
    assert wt.parse_action(action_value(burn_uid=65535)).inputs["burn_uid"] == 65535
    garbled = problem(wt.parse_action, action_value(bundles=[embed(bundle_envelope())[:-1]]))
    assert garbled.startswith("a named bundle is not an envelope: ")


# ---------------------------------------------------------------- named bundles and stored sets


def signed_bundles(keys_: list[Any], epoch: int = 3) -> list[env.Envelope]:
    return [bundle_envelope(k, {"epoch": epoch, "root": "ab" * 32, "count": 2}) for k in keys_]


def action_with(bundles: list[env.Envelope]) -> wt.WeightsAction:
    return dataclasses.replace(wt.parse_action(action_value()), bundles=tuple(bundles))


def check(bundles: list[env.Envelope], held: tuple[wt.Bundle, ...] = ()) -> list[wt.Bundle]:
    return wt.check_bundles(action_with(bundles), NETWORK, VSET, verify_signature, held)


def test_named_bundle_refusals() -> None:
    good = signed_bundles(K[:3])
    assert [b.signer for b in check(good)] == [k.ss58 for k in K[:3]]
    first = f"bundle 0 ({good[0].signer})"
    elsewhere = sign(K[0], BUNDLE, good[0].body, network=dataclasses.replace(NETWORK, netuid=101))
    assert problem(check, [elsewhere]) == f"{first} is signed for another network"
    assert (
        problem(check, [bundle_envelope(K[0], [1])])
        == f"{first}: a bundle body has exactly 'epoch', 'root' and 'count'"
    )
    assert problem(check, signed_bundles(K[:1], epoch=4)) == f"{first} is for epoch 4, not 3"
    outsider = signed_bundles(keys(1, seed=9))[0]
    assert problem(check, [outsider]) == f"bundle 0 ({outsider.signer}): the signer is not a validator"
    assert problem(check, [good[1], good[0]]) == "bundles must be sorted by signer, one per validator"
    assert problem(check, [good[0], good[0]]) == "bundles must be sorted by signer, one per validator"
    forged = dataclasses.replace(good[1], signature=bytes(64))
    assert (
        problem(check, [good[0], forged, good[2]])
        == f"bundle 1 ({forged.signer}): the signature does not verify"
    )
    assert problem(check, good[:2]) == (
        "the 2 named bundles do not come from a quorum of the validators (more than 2/3 of the stake and at "
        "least 3 validators)"
    )


def test_a_held_bundle_is_not_verified_again_but_a_different_one_is() -> None:
    good = signed_bundles(K[:3])
    held = tuple(wt.parse_bundle(e) for e in good)
    calls: list[str] = []

    def counting(scheme: str, signer: str, payload: bytes, signature: bytes) -> bool:
        calls.append(signer)
        return verify_signature(scheme, signer, payload, signature)

    wt.check_bundles(action_with(good), NETWORK, VSET, counting, held)
    assert calls == []
    wt.check_bundles(action_with(good), NETWORK, VSET, counting, held[:1])
    assert calls == [good[1].signer, good[2].signer]
    resigned = sign(K[0], BUNDLE, {**good[0].body}, seq=2)  # same signer, other signature
    with pytest.raises(wt.WeightsError):
        wt.check_bundles(
            action_with([dataclasses.replace(resigned, signature=bytes(64)), *good[1:]]),
            NETWORK,
            VSET,
            counting,
            held,
        )


def test_stored_report_sets_must_match_their_bundle() -> None:
    report_set = wt.ReportSet.of(K[0].ss58, 3, [("sort", MINER, 5), ("sort", "m2", 1)])
    envelope = bundle_envelope(K[0], wt.bundle_body(report_set))
    bundle = wt.parse_bundle(envelope)
    found, missing = wt.resolve([bundle], {report_set.root: report_set}.get)
    assert (found, missing) == ([report_set], [])
    assert wt.resolve([bundle], {}.get) == ([], [bundle])
    mismatch = f"the report set stored under root {bundle.root[:16]}… does not match {bundle.signer}'s bundle"
    for wrong in (
        dataclasses.replace(bundle, root="ef" * 32),
        dataclasses.replace(bundle, epoch=4),
        dataclasses.replace(bundle, count=1),
        dataclasses.replace(bundle, envelope=bundle_envelope(K[1], wt.bundle_body(report_set))),
    ):
        with pytest.raises(wt.WeightsError) as info:
            wt.resolve([wrong], lambda root: report_set)
        assert str(info.value) == mismatch.replace(bundle.root[:16], wrong.root[:16]).replace(
            bundle.signer, wrong.signer
        )


def test_compute_and_build() -> None:
    report_set = wt.ReportSet.of(K[0].ss58, 3, [("sort", MINER, 5)])
    context = wt.WeightsContext(
        100, 0, 3, 500, {K[0].ss58: 10}, {MINER: 4}, (ChallengeShare("sort", 1_000_000, 1),), 0
    )
    weights, digest = wt.compute(context, [report_set])
    assert weights == {4: 10**9} and digest == wt.vector_hash(100, 0, 3, 500, weights)
    bundles = [wt.parse_bundle(bundle_envelope(k, wt.bundle_body(report_set))) for k in (K[2], K[0])]
    action = wt.build_action(context, bundles, [report_set])
    assert [e.signer for e in action.bundles] == sorted([K[2].ss58, K[0].ss58])
    assert action.weights == ((4, 10**9),) and action.vector_hash == digest
    assert action.inputs == context.inputs()
    broken = dataclasses.replace(context, challenges=(ChallengeShare("sort", 2_000_000, 1),))
    assert problem(wt.compute, broken, [report_set]).startswith("aggregation refuses the inputs: ")


def test_the_report_count_limit_is_exact() -> None:
    reports = [["sort", f"m{i:06d}", 1] for i in range(wt.MAX_REPORTS)]
    assert len(wt.report_set_from_canonical({**GOOD_SET, "reports": reports}).entries) == wt.MAX_REPORTS
    over = [*reports, ["sort", "z", 1]]
    assert problem(wt.report_set_from_canonical, {**GOOD_SET, "reports": over}) == (
        f"reports must be a list of at most {wt.MAX_REPORTS}"
    )
