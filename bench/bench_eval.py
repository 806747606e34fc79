"""Evaluation benchmarks: runtime overhead, pool throughput, cold vs cached module load.

1. Per-evaluation overhead of ``Sandbox.evaluate`` against a minimal direct wasmtime call
   of the same module (same engine settings: fresh store, instantiate, alloc, write,
   call, read) for an evaluation of about 1 ms. Target: at most 1.3x.
2. Throughput of the worker pool with 2 workers against 1 on the same jobs. Target: at
   least 1.7x (needs 2 free cores).
3. Module load: compile (cold) against the disk cache (new process) and the memory cache.
"""

from __future__ import annotations

import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import wasmtime

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from platform_cli.core import abi
from platform_cli.core.challenge import ResourcePolicy
from platform_cli.runtime.cache import ModuleCache
from platform_cli.runtime.engine import Engine, engine_fingerprint
from platform_cli.runtime.pool import Job, WorkerPool
from platform_cli.runtime.sandbox import Sandbox

# evaluate() spins n iterations (a little-endian u32 at the start of the input), then returns a
# valid ABI v1 record with score 1.
WORK = """
(module
  (memory (export "memory") 1)
  (data (i32.const 16) "\\01\\01\\00\\00\\01\\00\\00\\00\\00\\00")
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "evaluate") (param $p i32) (param $len i32) (result i64)
    (local $n i32) (local $i i32) (local $acc i32)
    (local.set $n (i32.load (local.get $p)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $acc (i32.add (local.get $acc) (i32.mul (local.get $i) (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (i32.store (i32.const 512) (local.get $acc))
    (i64.const 0x100000000a)))
"""
LIMITS = ResourcePolicy(
    fuel=10**10, memory_bytes=16 << 20, wall_ms=10_000, max_input_bytes=65_536, max_output_bytes=4096
)


def per_call(fn, repeat: int) -> float:
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(repeat):
            fn()
        samples.append((time.perf_counter() - started) / repeat)
    return statistics.median(samples)


def spins(n: int) -> bytes:
    return n.to_bytes(4, "little") + bytes(60)


def calibrate(sandbox: Sandbox, module: bytes, sha: str, target_s: float) -> int:
    """Iterations that make one evaluation take about ``target_s``."""
    n = 1 << 12
    while True:
        data = spins(n)
        elapsed = per_call(lambda d=data: sandbox.evaluate(module, sha, "evaluate", d, LIMITS, bytes(32)), 3)
        if elapsed >= target_s * 0.95:
            return n
        n = max(n * 2 if elapsed < target_s / 4 else n + 1, int(n * target_s / max(elapsed, 1e-6)))


def overhead() -> None:
    module = wasmtime.wat2wasm(WORK)
    sha = hashlib.sha256(module).hexdigest()
    sandbox = Sandbox()
    data = spins(calibrate(sandbox, module, sha, 0.001))
    ours = per_call(lambda: sandbox.evaluate(module, sha, "evaluate", data, LIMITS, bytes(32)), 200)

    engine = sandbox.engine.wasm
    compiled = wasmtime.Module(engine, module)
    linker = wasmtime.Linker(engine)

    def direct() -> bytes:
        store = wasmtime.Store(engine)
        store.set_fuel(LIMITS.fuel)
        store.set_epoch_deadline(10**6)
        exports = linker.instantiate(store, compiled).exports(store)
        memory = exports["memory"]
        ptr = exports["alloc"](store, len(data))
        memory.write(store, data, ptr)
        out_ptr, out_len = abi.unpack_pointer(exports["evaluate"](store, ptr, len(data)))
        return bytes(memory.read(store, out_ptr, out_ptr + out_len))

    base = per_call(direct, 200)
    sandbox.close()
    print(f"overhead: evaluation of {base * 1000:.2f} ms direct vs {ours * 1000:.2f} ms through the runtime")
    print(f"overhead ratio runtime/direct: {ours / base:.3f}x (target <= 1.3x)")


def throughput() -> None:
    module = wasmtime.wat2wasm(WORK)
    sha = hashlib.sha256(module).hexdigest()
    sandbox = Sandbox()
    n = calibrate(sandbox, module, sha, 0.040)
    sandbox.close()
    job = Job(module, sha, "evaluate", spins(n), LIMITS, bytes(32))
    jobs = [job] * 24
    timings = {}
    for workers in (1, 2):
        with WorkerPool(workers) as pool:
            pool.map([job] * workers)  # workers up and module compiled
            started = time.perf_counter()
            results = pool.map(jobs)
            timings[workers] = time.perf_counter() - started
        assert all(r.outcome == "ok" for r in results)
    per_job = timings[1] / len(jobs) * 1000
    print(
        f"throughput: {len(jobs)} jobs of ~{per_job:.0f} ms: 1 worker {timings[1]:.2f} s, 2 workers {timings[2]:.2f} s"
    )
    print(f"throughput ratio 2 workers/1 worker: {timings[1] / timings[2]:.2f}x (target >= 1.7x)")


def module_load() -> None:
    functions = "\n".join(
        f'(func (export "f{i}") (param i32) (result i32) (i32.add (i32.mul (local.get 0) (i32.const {i})) (i32.const 7)))'
        for i in range(3000)
    )
    module = wasmtime.wat2wasm(f"(module {functions})")
    sha = hashlib.sha256(module).hexdigest()
    engine = Engine()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        ModuleCache(engine.wasm, engine_fingerprint(), Path(tmp)).get(sha, module)
        cold = time.perf_counter() - started
        warm_cache = ModuleCache(engine.wasm, engine_fingerprint(), Path(tmp))
        started = time.perf_counter()
        warm_cache.get(sha, module)
        disk = time.perf_counter() - started
        started = time.perf_counter()
        warm_cache.get(sha, module)
        memory = time.perf_counter() - started
    engine.close()
    print(
        f"module load ({len(module) // 1024} KiB, 3000 functions): compile {cold * 1000:.1f} ms, "
        f"disk cache {disk * 1000:.2f} ms, memory cache {memory * 1e6:.1f} us"
    )
    print(f"module load ratio cold/disk-cached: {cold / disk:.1f}x")


if __name__ == "__main__":
    overhead()
    throughput()
    module_load()
