;; Challenge "compress": miners submit a WASM compressor for the challenge's format.
;;
;; The challenge fills 4096 bytes from the host seed (platform.seed): runs of one byte
;; mixed with random literals. The submission (exports `memory`, `alloc`, `run`, as in
;; sort-v1) compresses them; the challenge decodes the result and requires the exact
;; original back. Format: a token t < 128 is followed by t + 1 literal bytes; a token
;; t >= 128 is followed by one byte repeated t - 125 times (3..130).
;; score = (original - compressed) / original; no gain scores 0.
(module
  (import "platform" "seed" (func $host_seed (param i32)))
  (import "platform" "submission_run"
    (func $submission_run (param i32 i32 i32 i32 i32 i32 i64 i32) (result i32)))
  (import "platform" "log" (func $log (param i32 i32)))
{{prelude}}
  (global $size i32 (i32.const 4096))

  (func $generate (param $dst i32)
    (local $i i32) (local $run i32) (local $byte i32)
    (block $full (loop $chunk
      (br_if $full (i32.ge_u (local.get $i) (global.get $size)))
      (local.set $run (i32.add (i32.const 1) (call $rand_below (i32.const 48))))
      (local.set $byte (call $rand_below (i32.const 256)))
      (local.set $run (select (local.get $run) (i32.const 1) (call $rand_below (i32.const 3))))
      (block $written (loop $put
        (br_if $written (i32.or (i32.eqz (local.get $run)) (i32.ge_u (local.get $i) (global.get $size))))
        (i32.store8 (i32.add (local.get $dst) (local.get $i)) (local.get $byte))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (local.set $run (i32.sub (local.get $run) (i32.const 1)))
        (br $put)))
      (br $chunk))))

  ;; Decode src[0..len) into dst (capacity $size); returns the decoded length or -1.
  (func $decode (param $src i32) (param $len i32) (param $dst i32) (result i32)
    (local $i i32) (local $o i32) (local $t i32) (local $n i32)
    (block $end (loop $token
      (br_if $end (i32.ge_u (local.get $i) (local.get $len)))
      (local.set $t (i32.load8_u (i32.add (local.get $src) (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (if (i32.lt_u (local.get $t) (i32.const 128))
        (then
          (local.set $n (i32.add (local.get $t) (i32.const 1)))
          (if (i32.gt_u (i32.add (local.get $i) (local.get $n)) (local.get $len)) (then (return (i32.const -1))))
          (if (i32.gt_u (i32.add (local.get $o) (local.get $n)) (global.get $size)) (then (return (i32.const -1))))
          (memory.copy (i32.add (local.get $dst) (local.get $o)) (i32.add (local.get $src) (local.get $i)) (local.get $n))
          (local.set $i (i32.add (local.get $i) (local.get $n))))
        (else
          (local.set $n (i32.sub (local.get $t) (i32.const 125)))
          (if (i32.ge_u (local.get $i) (local.get $len)) (then (return (i32.const -1))))
          (if (i32.gt_u (i32.add (local.get $o) (local.get $n)) (global.get $size)) (then (return (i32.const -1))))
          (memory.fill (i32.add (local.get $dst) (local.get $o))
            (i32.load8_u (i32.add (local.get $src) (local.get $i))) (local.get $n))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))))
      (local.set $o (i32.add (local.get $o) (local.get $n)))
      (br $token)))
    (local.get $o))

  (func (export "evaluate") (param $ptr i32) (param $len i32) (result i64)
    (local $seed i32) (local $original i32) (local $packed i32) (local $decoded i32) (local $info i32)
    (local $status i32) (local $clen i32)
    (call $parse_input (local.get $ptr))
    (local.set $seed (call $alloc (i32.const 32)))
    (call $host_seed (local.get $seed))
    (call $seed_rng (local.get $seed))
    (local.set $original (call $alloc (global.get $size)))
    (local.set $packed (call $alloc (i32.shl (global.get $size) (i32.const 1))))
    (local.set $decoded (call $alloc (global.get $size)))
    (local.set $info (call $alloc (i32.const 16)))
    (call $generate (local.get $original))
    (local.set $status (call $submission_run (global.get $sub_ptr) (global.get $sub_len)
      (local.get $original) (global.get $size) (local.get $packed) (i32.shl (global.get $size) (i32.const 1))
      (i64.const 100000000) (local.get $info)))
    (if (local.get $status)
      (then (return (call $invalid {{str:the compressor failed to run (trap, fuel or bad output)}}))))
    (local.set $clen (i32.load offset=8 (local.get $info)))
    (if (i32.ne (call $decode (local.get $packed) (local.get $clen) (local.get $decoded)) (global.get $size))
      (then (return (call $invalid {{str:the compressed stream does not decode to 4096 bytes}}))))
    (if (i32.eqz (call $memeq (local.get $original) (local.get $decoded) (global.get $size)))
      (then (return (call $invalid {{str:the round trip does not give the original back}}))))
    (call $log {{str:compress: round trip verified}})
    (call $begin_output (i32.const 1)
      (call $ratio
        (i64.sub (i64.extend_i32_u (global.get $size)) (i64.extend_i32_u (local.get $clen)))
        (i64.extend_i32_u (global.get $size)))
      {{str:round trip verified}} (i32.const 3))
    (call $metric {{str:original_bytes}} (i64.extend_i32_u (global.get $size)))
    (call $metric {{str:compressed_bytes}} (i64.extend_i32_u (local.get $clen)))
    (call $metric {{str:compressor_fuel}} (i64.load (local.get $info)))
    (call $finish))
{{data}}
)
