"""Compare the metrics a TIPC step printed with the expected ones in test_tipc/results/.

    python test_tipc/compare_results.py --step eval --log EVAL_LOG \
        --expected test_tipc/results/GPEN/lite_train_lite_infer.txt --data test_tipc/data
    python test_tipc/compare_results.py --step infer --log INFER_LOG --reference EVAL_LOG --precision fp32 \
        --expected test_tipc/results/GPEN/lite_train_lite_infer.txt --data test_tipc/data
    python test_tipc/compare_results.py --fingerprint test_tipc/data     # for a new `data` row

Two kinds of check, each printed as one line; the exit status is 1 when any fails:
* expected: the step's `PSNR:` / `SSIM:` lines against the results file's values for the lite data set
  prepare.sh built (found by its fingerprint), within the stored tolerance;
* agreement (--reference): infer.py --degrade and test.py degrade the same faces with the same seeds, so
  the predictor's PSNR must match the evaluation's PSNR of the same run (an export or predictor bug shows
  up here even when both drift together within the expected tolerance).
Only the standard library is used, so the comparison runs even where the project does not import.
"""
import argparse
import hashlib
import math
import os
import re
import sys

# |PSNR(infer) − PSNR(eval)| accepted within one run, in dB. fp32: the exported predictor (oneDNN on or
# off, any thread count or batch) and test.py's generator agree to ~1e-4 dB on the lite run; fp16
# (TensorRT on a GPU) rounds every activation.
AGREEMENT_DB = {"fp32": 0.01, "fp16": 0.5}

# Lite data built from the user's own folder (GPEN_TIPC_DATA) has no expected values; say so and pass
# instead of failing.
CUSTOM_SOURCE = "GPEN_TIPC_DATA"

METRIC_LINE = re.compile(r"^(PSNR|SSIM|FID): *([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|inf|nan)\b", re.M)


def fingerprint(data_dir):
    """sha256 over the relative names and bytes of the images under data_dir/train and data_dir/test."""
    digest = hashlib.sha256()
    count = 0
    for part in ("train", "test"):
        root = os.path.join(data_dir, part)
        if not os.path.isdir(root):
            raise SystemExit(f"compare_results: {root} is missing; run test_tipc/prepare.sh first")
        names = []
        for folder, _, files in os.walk(root):
            names += [os.path.relpath(os.path.join(folder, f), data_dir).replace(os.sep, "/") for f in files]
        for name in sorted(names):
            with open(os.path.join(data_dir, name), "rb") as handle:
                digest.update(name.encode() + b"\0" + hashlib.sha256(handle.read()).digest())
            count += 1
    if not count:
        raise SystemExit(f"compare_results: no files under {data_dir}/train or {data_dir}/test")
    return digest.hexdigest()[:16]


def read_expected(path):
    """({data set name: fingerprint}, {(data set, step, metric): (expected, tolerance)}) of a results file."""
    data_sets, metrics = {}, {}
    with open(path, encoding="utf-8") as handle:
        for number, raw in enumerate(handle, 1):
            fields = raw.split("#", 1)[0].split()
            if not fields:
                continue
            try:
                if fields[0] == "data" and len(fields) == 3:
                    data_sets[fields[1]] = fields[2]
                    continue
                if fields[0] == "metric" and len(fields) == 6:
                    metrics[tuple(fields[1:4])] = (float(fields[4]), float(fields[5]))
                    continue
            except ValueError:
                pass
            raise SystemExit(f"compare_results: {path} line {number} is not `data NAME FINGERPRINT` or "
                             f"`metric DATA STEP METRIC EXPECTED TOLERANCE`: {raw.strip()}")
    return data_sets, metrics


def read_metrics(log_path):
    """{metric: value} of the last `PSNR: x` / `SSIM: y` / `FID: z` lines a script printed."""
    if not os.path.isfile(log_path):
        raise SystemExit(f"compare_results: log not found: {log_path}")
    with open(log_path, encoding="utf-8", errors="replace") as handle:
        text = handle.read()
    return {name: float(value) for name, value in METRIC_LINE.findall(text)}


def data_source(data_dir):
    marker = os.path.join(data_dir, "source.txt")
    if not os.path.isfile(marker):
        return "unknown"
    with open(marker, encoding="utf-8") as handle:
        return handle.read().strip() or "unknown"


def check(label, value, expected, tolerance):
    """One result line; True when |value − expected| <= tolerance."""
    ok = value is not None and math.isfinite(value) and abs(value - expected) <= tolerance
    shown = "missing" if value is None else f"{value:.4f}"
    print(f"{label}: {shown} (expected {expected:.4f} ± {tolerance:g}) {'ok' if ok else 'MISMATCH'}")
    return ok


def compare_expected(args, found):
    """Checks against the results file; returns the number of failed checks."""
    data_sets, expected = read_expected(args.expected)
    if not args.data:
        raise SystemExit("compare_results: --expected needs --data (test_tipc/data, built by prepare.sh)")
    this_set = fingerprint(args.data)
    names = [name for name, value in data_sets.items() if value == this_set]
    source = data_source(args.data)
    if not names:
        known = ", ".join(f"{n} {f}" for n, f in data_sets.items()) or "none"
        if source.startswith(CUSTOM_SOURCE):
            print(f"{args.step}: not compared: no expected metrics for your lite data ({source}, fingerprint "
                  f"{this_set}); known sets: {known}")
            return 0
        print(f"{args.step}: the lite data ({source}, fingerprint {this_set}) is not a set with expected "
              f"metrics ({known}): rerun test_tipc/prepare.sh or add its values to {args.expected}")
        return 1
    rows = {metric: value for (name, step, metric), value in expected.items()
            if name == names[0] and step == args.step}
    if not rows:
        print(f"{args.step}: {args.expected} lists no metrics for step {args.step} on data set {names[0]}")
        return 1
    failed = 0
    for metric, (value, tolerance) in sorted(rows.items()):
        failed += not check(f"{args.step} {metric} on {names[0]}", found.get(metric), value, tolerance)
    return failed


def compare_reference(args, found):
    reference = read_metrics(args.reference)
    if "PSNR" not in reference:
        print(f"agreement: no `PSNR:` line in {args.reference}")
        return 1
    return int(not check(f"{args.step} PSNR vs eval PSNR ({args.precision})", found.get("PSNR"),
                         reference["PSNR"], AGREEMENT_DB[args.precision]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--log", help="log of the step to check (its stdout and stderr)")
    parser.add_argument("--step", choices=("eval", "infer"), help="which rows of the results file apply")
    parser.add_argument("--expected", help="results file (test_tipc/results/<model>/<mode>.txt)")
    parser.add_argument("--data", help="the data folder prepare.sh built, test_tipc/data (selects the expected values)")
    parser.add_argument("--reference", help="the same run's eval log: its PSNR must match this log's")
    parser.add_argument("--precision", choices=sorted(AGREEMENT_DB), default="fp32",
                        help="inference precision (sets the agreement tolerance)")
    parser.add_argument("--fingerprint", metavar="DATA_DIR", help="print the fingerprint of a lite data folder")
    args = parser.parse_args(argv)
    if args.fingerprint:
        print(fingerprint(args.fingerprint))
        return 0
    if not (args.log and args.step) or not (args.expected or args.reference):
        parser.error("give --log and --step, and --expected (with --data) and/or --reference")
    found = read_metrics(args.log)
    failed = 0
    if args.expected:
        failed += compare_expected(args, found)
    if args.reference:
        failed += compare_reference(args, found)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
