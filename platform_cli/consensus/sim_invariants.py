"""The properties every simulated schedule is checked against, by an independent oracle.

The oracle does its own quorum arithmetic (it does not call ``ValidatorSet.quorum``), so
a machine whose quorum rule was weakened is caught by the commits it makes:

- **agreement**: honest validators' logs agree at every height, and each entry links to
  the one before it;
- **validity**: every committed entry applies from genesis; every registry update in it
  is signed by the sudo key; every vector equals the recomputation from the report sets
  its bundles commit to, and those bundles come from a quorum;
- **certificates**: every honest commit carries a certificate that verifies, whose
  signers are a quorum by the oracle's own count;
- **no honest double vote**: no honest validator signed two different bodies at one
  slot, and no evidence names an honest validator;
- **no censorship**: a committed vector names every bundle that honest validators held
  before the cutoff, when those validators block every quorum;
- **liveness** (when the honest validators are a quorum): every honest validator commits
  every height, and each height decided after the network healed is decided within
  ``f + 2`` rounds of the highest round an honest validator was in when it healed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import pairwise
from typing import Any

from platform_cli.consensus.sim_node import SimNode, Trace
from platform_cli.consensus.sim_world import NETWORK, World
from platform_cli.core.consensus import certificate as certs
from platform_cli.core.consensus import weights as wt
from platform_cli.core.consensus.actions import RegistryAction, parse_action
from platform_cli.core.consensus.entry import parse_entry
from platform_cli.core.consensus.ledger import Ledger, LedgerError
from platform_cli.core.consensus.ports import Commit

Result = str | None


def oracle_quorum(stakes: dict[str, int], signers: Iterable[str]) -> bool:
    chosen = {s for s in signers if s in stakes}
    total = sum(stakes.values())
    return 3 * sum(stakes[s] for s in chosen) > 2 * total and 3 * len(chosen) > 2 * len(stakes)


def agreement(logs: dict[int, list[Commit]]) -> Result:
    longest = max(logs.values(), key=len, default=[])
    for node, log in logs.items():
        for commit, reference in zip(log, longest, strict=False):
            if commit.certificate.value_id != reference.certificate.value_id:
                return f"validator {node} decided {commit.certificate.value_id[:12]} at height {commit.height}, another decided {reference.certificate.value_id[:12]}"
    for previous, commit in pairwise(longest):
        if commit.value["prev"] != previous.certificate.value_id:
            return f"height {commit.height} does not link to height {previous.height}"
    return None


def validity(world: World, log: Sequence[Commit], report_sets: dict[str, wt.ReportSet]) -> Result:
    ledger = Ledger.start(world.genesis)
    for commit in log:
        entry = parse_entry(commit.value)
        for raw in entry.actions:
            problem = _action_problem(world, ledger, parse_action(raw), report_sets)
            if problem:
                return f"height {commit.height}: {problem}"
        try:
            ledger = ledger.apply(entry)
        except LedgerError as exc:
            return f"height {commit.height} does not apply: {exc}"
    return None


def _action_problem(
    world: World, ledger: Ledger, action: Any, report_sets: dict[str, wt.ReportSet]
) -> Result:
    if isinstance(action, RegistryAction):
        envelope = action.envelope
        if envelope.signer != world.sudo.ss58 or not world.verifier(
            envelope.scheme, envelope.signer, envelope.signing_payload(), envelope.signature
        ):
            return "a registry update not signed by the sudo key was committed"
        return None
    if not isinstance(action, wt.WeightsAction):
        return None
    signers = [b.signer for b in action.bundles]
    if not oracle_quorum(world.stakes, signers):
        return f"the vector of epoch {action.epoch} names bundles of no quorum"
    sets = []
    for envelope in action.bundles:
        if not world.verifier(
            envelope.scheme, envelope.signer, envelope.signing_payload(), envelope.signature
        ):
            return "a named bundle's signature does not verify"
        reports = report_sets.get(wt.parse_bundle(envelope).root)
        if reports is None:
            return f"no report set was ever published for {envelope.signer}'s named bundle"
        sets.append(reports)
    context = world.weights_context(ledger, action.epoch)
    if context is None or context.inputs() != action.inputs:
        return f"the vector of epoch {action.epoch} was computed over other inputs"
    _, digest = wt.compute(context, sets)
    if digest != action.vector_hash:
        return f"the vector of epoch {action.epoch} differs from the honest recomputation"
    return None


def certificates(world: World, logs: dict[int, list[Commit]]) -> Result:
    for node, log in logs.items():
        for commit in log:
            cert = commit.certificate
            try:
                certs.verify(cert, world.validators, world.verifier, value=commit.value)
            except certs.CertificateError as exc:
                return f"validator {node}'s certificate of height {commit.height}: {exc}"
            if not oracle_quorum(world.stakes, cert.signers):
                return f"validator {node} committed height {commit.height} without a quorum of signers"
            if cert.network != NETWORK:
                return "a certificate names another network"
    return None


def no_double_vote(trace: Trace) -> Result:
    if trace.double_votes:
        signer, slot = trace.double_votes[0]
        return f"honest validator {signer} signed two different messages at slot {slot}"
    for evidence in trace.evidence:
        if evidence.signer in trace.honest:
            return f"evidence names honest validator {evidence.signer}"
    return None


def no_censorship(world: World, nodes: Sequence[SimNode], log: Sequence[Commit]) -> Result:
    honest = [n for n in nodes if n.honest]
    for commit in log:
        for raw in commit.value["actions"]:
            action = parse_action(raw)
            if not isinstance(action, wt.WeightsAction):
                continue
            epoch = world.epoch(action.epoch)
            named = {b.signer for b in action.bundles}
            for signer in world.stakes:
                holders = {
                    n.key.ss58
                    for n in honest
                    if signer in n.view.bundles.get(action.epoch, {})
                    and epoch is not None
                    and n.view.bundles[action.epoch][signer][1] < epoch.cutoff_ms
                }
                outside = [s for s in world.stakes if s not in holders]
                if holders and not oracle_quorum(world.stakes, outside) and signer not in named:
                    return f"the vector of epoch {action.epoch} leaves out {signer}'s well-propagated bundle"
    return None


def liveness(
    world: World,
    logs: dict[int, list[Commit]],
    trace: Trace,
    healed: dict[int, tuple[int, int]],
    healed_at: int,
) -> Result:
    short = {node: len(log) for node, log in logs.items() if len(log) < world.heights}
    if short:
        node, height = next(iter(short.items()))
        return f"validator {node} committed {height} of {world.heights} heights after the network healed"
    f = world.validators.f
    for height in range(1, world.heights + 1):
        decided = [trace.decisions[n][height] for n in logs if height in trace.decisions.get(n, {})]
        if not decided or min(t for _, _, t in decided) < healed_at:
            continue
        base = max([r for h, r in healed.values() if h == height], default=0)
        round_ = min(r for _, r, _ in decided)
        if round_ > base + f + 2:
            return f"height {height} took until round {round_} after healing in round {base} (bound: f + 2 = {f + 2} rounds)"
    return None
