"""The compile-time estimate: what the static validator charges a module before wasmtime
compiles it.

wasmtime cannot interrupt a compile, so compile time is bounded before it starts, from
counts the body walk found. Bytes alone do not bound it: an empty function costs tens of
microseconds, every declared local costs (it is zeroed), and with fuel metering every
loop header and branch costs far more than a plain instruction, superlinearly in their
number within one function (hence a cap per function). The weights are the worst cost
per unit measured on this machine class (``bench/bench_eval.py`` prints the table, and
the estimate's ratio to the measured time for the worst shapes found), with margin.

The estimate is a pure function of the module's bytes: every validator refuses the same
modules, whatever its speed or cache state.
"""

from __future__ import annotations

from collections.abc import Iterable

from platform_cli.runtime.wasmbin import Body, ModuleRefused

MAX_FUNCTION_CONTROL = 2_048
"""Loops, ifs, branches and indirect calls in one function: their cost grows with their
number times the function's variables."""

# Microseconds, each the worst measured per unit with a margin of two.
US_PER_FUNCTION = 100
US_PER_LOCAL = 0.1
US_PER_INSTRUCTION = 3
US_PER_CALL = 20
US_PER_INDIRECT_CALL = 200
US_PER_BRANCH = 30
US_PER_IF = 30
US_PER_LOOP = 100
US_PER_TABLE_TARGET = 1.5
# Per variable (parameter or local) and join point: SSA construction and register
# allocation revisit every variable live at every loop header and `if` merge.
US_PER_VARIABLE_LOOP = 3.5
US_PER_VARIABLE_IF = 1.5
US_PER_VARIABLE_BRANCH = 0.2

CHALLENGE_BUDGET_MS = 4_000
SUBMISSION_BUDGET_MS = 1_000
SETUP_MS = 1_000
"""Per evaluation, besides compiling and running: reading, walking every function body of
up to MAX_NESTED_MODULES nested modules, instantiating."""


def budget_ms(submission: bool) -> int:
    """The most one module's estimate may be, by role."""
    return SUBMISSION_BUDGET_MS if submission else CHALLENGE_BUDGET_MS


def nested_budget_ms(wall_ms: int) -> int:
    """What the distinct nested modules of one evaluation may be estimated at, together:
    as much as the guest may run, so compiling at most doubles an evaluation."""
    return wall_ms


def evaluation_bound_ms(wall_ms: int) -> int:
    """The documented bound on one evaluation's wall time on this machine class: the
    challenge's own compile (on a cold cache), its nested modules' compiles, the guest's
    wall-clock budget, and the fixed setup."""
    return CHALLENGE_BUDGET_MS + nested_budget_ms(wall_ms) + wall_ms + SETUP_MS


def check_function(body: Body) -> None:
    if body.control > MAX_FUNCTION_CONTROL:
        raise ModuleRefused(
            f"function {body.index} has {body.control} loops, ifs, branches and indirect calls, "
            f"over the limit of {MAX_FUNCTION_CONTROL}"
        )


def function_us(body: Body) -> float:
    return (
        US_PER_FUNCTION
        + US_PER_LOCAL * body.locals
        + US_PER_INSTRUCTION * body.instructions
        + US_PER_CALL * body.calls
        + US_PER_INDIRECT_CALL * body.indirect_calls
        + US_PER_BRANCH * body.branches
        + US_PER_IF * body.ifs
        + US_PER_LOOP * body.loops
        + US_PER_TABLE_TARGET * body.table_targets
        + body.variables
        * (
            US_PER_VARIABLE_LOOP * body.loops
            + US_PER_VARIABLE_IF * body.ifs
            + US_PER_VARIABLE_BRANCH * body.branches
        )
    )


def estimate_ms(bodies: Iterable[Body]) -> int:
    return int(-(-sum(function_us(b) for b in bodies) // 1000))


def describe(bodies: list[Body]) -> str:
    total = {
        name: sum(getattr(b, name) for b in bodies)
        for name in ("locals", "instructions", "loops", "ifs", "branches", "indirect_calls")
    }
    return f"{len(bodies)} functions, " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in total.items())
