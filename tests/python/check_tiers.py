"""Fails CI when a Python test tier that should have run ran nothing or was skipped.

pytest exits 0 with "80 skipped" (a missing binary, torch not importable, a missing venv), which
left CI green while the oracles checked nothing. scripts/test.sh runs pytest with --junitxml and
then this script over that report:

  check_tiers.py REPORT.xml --tests-dir tests/python --nt-status STATUS
  check_tiers.py --ctest CTEST.xml --expected-skips tests/cpp/expected_skips.txt

The second form checks the C++ tier from ctest's --output-junit report: at least one test ran, and
every skipped test (GTEST_SKIP, e.g. NumPy missing for an oracle) is one of the by-design skips
listed in the expected-skips file.

Rules, per test module (tests/python/test_*.py):
  - every module must appear in the report with at least one test that ran, and none skipped;
  - except the neural-tangents modules (NT_MODULES: test_nt_kernels.py, test_nt_predict.py,
    test_package_nt.py; JAX neural-tangents, installed by scripts/install-nt.sh) when
    STATUS is "offline": PyPI did not answer, so the tier may be skipped (a warning is printed).
    STATUS "ok" means the venv imports neural-tangents: the tier must run. Any other status (the
    install failed although PyPI answered, or install-nt.sh did not run) fails.
Exit status 0 when every rule holds, 1 otherwise (each violation printed on stderr).
"""
import argparse
import re
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

NT_MODULES = {"test_nt_kernels", "test_nt_predict", "test_package_nt"}


def module_of(case):
    """The test module of a junit <testcase>: the first dotted component of its classname that
    starts with 'test_' (classname is e.g. tests.python.test_torch_forward[.TestClass]); a module
    skipped at collection has an empty classname and the module path as its name."""
    key = case.get("classname") or case.get("name") or ""
    for part in key.split("."):
        if part.startswith("test_"):
            return part
    return key


def check_ctest(report, expected_skips):
    """The C++ tier: tests ran, and nothing skipped that is not expected to."""
    patterns = [line.strip() for line in Path(expected_skips).read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    ran, unexpected = 0, []
    for case in ET.parse(report).getroot().iter("testcase"):
        name = case.get("name", "")
        if case.find("skipped") is None and case.get("status") != "notrun":
            ran += 1
        elif not any(re.fullmatch(p, name) for p in patterns):
            unexpected.append(name)
    print(f"check_tiers: C++ (ctest): {ran} ran, {len(unexpected)} skipped unexpectedly", file=sys.stderr)
    for name in unexpected:
        print(f"check_tiers: FAIL: C++ test skipped: {name[:160]}", file=sys.stderr)
    if ran == 0:
        print("check_tiers: FAIL: C++ (ctest): no test ran", file=sys.stderr)
    return 1 if unexpected or ran == 0 else 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", nargs="?")
    ap.add_argument("--ctest", help="ctest --output-junit report: check the C++ tier instead")
    ap.add_argument("--expected-skips", default=str(Path(__file__).resolve().parents[1] / "cpp" / "expected_skips.txt"))
    ap.add_argument("--tests-dir", default=str(Path(__file__).resolve().parent))
    ap.add_argument("--nt-status", default="missing", help="first word of build-nt/status (ok, offline, failed...)")
    args = ap.parse_args(argv)
    if args.ctest:
        return check_ctest(args.ctest, args.expected_skips)
    if not args.report:
        ap.error("give the pytest junit report (or --ctest)")

    counts = defaultdict(lambda: {"ran": 0, "skipped": 0, "reasons": []})
    root = ET.parse(args.report).getroot()
    for case in root.iter("testcase"):
        c = counts[module_of(case)]
        skipped = case.find("skipped")
        if skipped is not None:
            c["skipped"] += 1
            reason = skipped.get("message", "") or (skipped.text or "").strip()
            if reason not in c["reasons"] and len(c["reasons"]) < 3:
                c["reasons"].append(reason)
        else:
            c["ran"] += 1

    modules = sorted(p.stem for p in Path(args.tests_dir).glob("test_*.py"))
    if not modules:
        print(f"check_tiers: no test modules in {args.tests_dir}", file=sys.stderr)
        return 1
    problems = []
    for m in modules:
        c = counts.get(m, {"ran": 0, "skipped": 0, "reasons": []})
        if m in NT_MODULES and args.nt_status != "ok":
            if args.nt_status == "offline":
                print(f"check_tiers: WARNING: {m} not required: PyPI unreachable, neural-tangents not installed "
                      f"({c['ran']} ran, {c['skipped']} skipped)", file=sys.stderr)
                continue
            problems.append(f"{m}: neural-tangents install status is '{args.nt_status}' (PyPI answered or "
                            "scripts/install-nt.sh did not run), so this tier must run; see build-nt/status")
        why = "; ".join(r for r in c["reasons"] if r)
        if c["skipped"]:
            problems.append(f"{m}: {c['skipped']} test(s) skipped ({why})")
        if c["ran"] == 0:
            problems.append(f"{m}: no test ran")
        print(f"check_tiers: {m}: {c['ran']} ran, {c['skipped']} skipped", file=sys.stderr)
    for p in problems:
        print(f"check_tiers: FAIL: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
