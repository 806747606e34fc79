;; Data challenge "predict": miners submit predictions for the shipped dataset.
;;
;; dataset.csv holds 128 rows (x, y) with y in thousandths; the build embeds the y
;; column in this module, so the module hash covers the data. A submission is 128
;; little-endian i32 predictions in thousandths (512 bytes). The fixed-point metric is
;; the mean absolute error in thousandths (MAE); score = 1000 / (1000 + MAE), so exact
;; predictions score 1.0 and an error of one unit on average scores 0.5.
(module
{{prelude}}
  (global $rows i32 (i32.const 128))

  (func (export "evaluate") (param $ptr i32) (param $len i32) (result i64)
    (local $i i32) (local $err i64) (local $sum i64) (local $mae i64)
    (call $parse_input (local.get $ptr))
    (if (i32.ne (global.get $sub_len) (i32.shl (global.get $rows) (i32.const 2)))
      (then (return (call $invalid {{str:a submission is exactly 128 little-endian i32 predictions (512 bytes)}}))))
    (block $done (loop $row
      (br_if $done (i32.ge_u (local.get $i) (global.get $rows)))
      (local.set $err (i64.sub
        (i64.load32_s (i32.add (global.get $sub_ptr) (i32.shl (local.get $i) (i32.const 2))))
        (i64.load32_s (i32.add {{ptr:dataset}} (i32.shl (local.get $i) (i32.const 2))))))
      (if (i64.lt_s (local.get $err) (i64.const 0)) (then (local.set $err (i64.sub (i64.const 0) (local.get $err)))))
      (local.set $sum (i64.add (local.get $sum) (local.get $err)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $row)))
    (local.set $mae (i64.div_u (local.get $sum) (i64.extend_i32_u (global.get $rows))))
    (call $begin_output (i32.const 1)
      (call $ratio (i64.const 1000) (i64.add (i64.const 1000) (local.get $mae)))
      {{str:scored against the shipped dataset}} (i32.const 2))
    (call $metric {{str:rows}} (i64.extend_i32_u (global.get $rows)))
    (call $metric {{str:mae_milli}} (local.get $mae))
    (call $finish))
{{data}}
)
