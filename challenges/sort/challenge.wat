;; Code challenge "sort": miners submit a WASM module that sorts i32 values.
;;
;; Submission ABI (sort-v1): exports `memory`, `alloc(n) -> ptr` and
;; `run(ptr, len) -> i64` (ptr << 32 | len); input and output are little-endian i32
;; arrays, output ascending (signed). The challenge draws 6 seeded cases of 16..255
;; values, runs the embedded reference (insertion sort) and the submission on each
;; through platform.submission_run, requires identical output, and scores by fuel:
;; score = ref_fuel / (2 * submission_fuel), so matching the reference gives 0.5.
(module
  (import "platform" "submission_run"
    (func $submission_run (param i32 i32 i32 i32 i32 i32 i64 i32) (result i32)))
  (import "platform" "log" (func $log (param i32 i32)))
{{prelude}}
  (global $cases i32 (i32.const 6))
  (global $case_fuel i64 (i64.const 20000000))

  (func (export "evaluate") (param $ptr i32) (param $len i32) (result i64)
    (local $case i32) (local $n i32) (local $i i32) (local $bytes i32)
    (local $input i32) (local $ref_out i32) (local $sub_out i32) (local $info i32)
    (local $status i32) (local $ref_fuel i64) (local $sub_fuel i64)
    (call $parse_input (local.get $ptr))
    (call $seed_rng (global.get $seed_ptr))
    (local.set $info (call $alloc (i32.const 16)))
    (local.set $input (call $alloc (i32.const 1024)))
    (local.set $ref_out (call $alloc (i32.const 1024)))
    (local.set $sub_out (call $alloc (i32.const 1024)))
    (block $all (loop $each
      (br_if $all (i32.ge_u (local.get $case) (global.get $cases)))
      (local.set $n (i32.add (i32.const 16) (call $rand_below (i32.const 240))))
      (local.set $bytes (i32.shl (local.get $n) (i32.const 2)))
      (local.set $i (i32.const 0))
      (block $filled (loop $fill
        (br_if $filled (i32.ge_u (local.get $i) (local.get $n)))
        (i32.store (i32.add (local.get $input) (i32.shl (local.get $i) (i32.const 2)))
                   (i32.wrap_i64 (call $rand)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $fill)))
      ;; the reference
      (local.set $status (call $submission_run {{bytes:reference}} (local.get $input) (local.get $bytes)
        (local.get $ref_out) (local.get $bytes) (global.get $case_fuel) (local.get $info)))
      (if (local.get $status) (then (unreachable)))
      (local.set $ref_fuel (i64.add (local.get $ref_fuel) (i64.load (local.get $info))))
      ;; the submission
      (local.set $status (call $submission_run (global.get $sub_ptr) (global.get $sub_len) (local.get $input)
        (local.get $bytes) (local.get $sub_out) (local.get $bytes) (global.get $case_fuel) (local.get $info)))
      (if (local.get $status)
        (then (return (call $invalid {{str:the submission failed to run (trap, fuel or bad output)}}))))
      (if (i32.ne (i32.load offset=8 (local.get $info)) (local.get $bytes))
        (then (return (call $invalid {{str:the submission returned the wrong number of values}}))))
      (if (i32.eqz (call $memeq (local.get $ref_out) (local.get $sub_out) (local.get $bytes)))
        (then (return (call $invalid {{str:the submission's output is not sorted}}))))
      (local.set $sub_fuel (i64.add (local.get $sub_fuel) (i64.load (local.get $info))))
      (local.set $case (i32.add (local.get $case) (i32.const 1)))
      (br $each)))
    (call $log {{str:sort: all cases correct}})
    (call $begin_output (i32.const 1)
      (call $ratio (local.get $ref_fuel) (i64.shl (local.get $sub_fuel) (i64.const 1)))
      {{str:sorted every case}} (i32.const 3))
    (call $metric {{str:cases}} (i64.extend_i32_u (global.get $cases)))
    (call $metric {{str:reference_fuel}} (local.get $ref_fuel))
    (call $metric {{str:submission_fuel}} (local.get $sub_fuel))
    (call $finish))
{{data}}
)
