#!/usr/bin/env python3
"""The verdict of scripts/gpu_check.sh: reads its work folder (steps.tsv, cases/*.tsv and
*.log, logs/*.log, bench/*.jsonl) and prints a summary of at most about 10,000 characters:
every step with its status and time, every failing test case with the first lines of its
failures, every compute-sanitizer finding with file:line, the nd-bench-train tables and the
MLP epochs. Writes the same text to WORK/summary.txt and a machine-readable OUT/summary.json.
Exit status 0 when everything passed (in a dry run, CUDA cases may only report "skipped")."""
import argparse
import glob
import json
import os
import re
import sys

SUMMARY_LIMIT = 10000
CASE_LINES = 10      # failure lines quoted per failing case
MAX_CASES = 15       # failing cases quoted in full
FILE_LINE = re.compile(r"([\w./+-]+\.(?:cu|cuh|cpp|h|hpp)):(\d+)")


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def read_tsv(path):
    rows = []
    for line in read(path).splitlines():
        if line.strip():
            rows.append(line.split("\t"))
    return rows


def short_path(p):
    """/any/where/kernels/x.cu -> kernels/x.cu (the repository's own folders)."""
    for top in ("kernels/", "engine/", "layers/", "nets/", "apps/", "data/", "test/", "bench/",
                "io/", "core/"):
        i = p.rfind("/" + top)
        if i >= 0:
            return p[i + 1:]
        if p.startswith(top):
            return p
    return os.path.basename(p)


def catch_failures(log):
    """The failure blocks of a Catch2 console log: section path, the FAILED/exception line and
    what follows (expansion, messages), a few lines each."""
    lines = log.splitlines()
    out = []
    header = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("-------") and i + 1 < len(lines):
            j = i + 1
            names = []
            while j < len(lines) and not lines[j].startswith("-------"):
                names.append(lines[j].strip())
                j += 1
            header = [n for n in names if n]
            i = j + 1
            continue
        if ("FAILED:" in line or "due to unexpected exception" in line or
                "due to a fatal error" in line or "FATAL ERROR" in line):
            block = []
            if len(header) > 1:
                block.append("section: " + " / ".join(header[1:]))
            m = FILE_LINE.search(line)
            block.append((short_path(m.group(1)) + ":" + m.group(2) + ": " +
                          line.split(": ", 1)[-1].strip()) if m else line.strip())
            k = i + 1
            while k < len(lines) and len(block) < CASE_LINES:
                t = lines[k]
                if t.startswith("=====") or t.startswith("-------"):
                    break
                if t.strip():
                    block.append("  " + t.strip()[:300])
                k += 1
            out.append(block)
            i = k
            continue
        i += 1
    return out


def crash_reason(rc, log):
    if rc in ("124", "137"):
        return "timed out"
    try:
        code = int(rc)
    except ValueError:
        return rc
    if code > 128:
        return "killed by signal %d" % (code - 128)
    m = re.search(r"(cuda\w*Error\w*|CUDNN_STATUS_\w+|CUBLAS_STATUS_\w+|CUSOLVER_STATUS_\w+)",
                  log)
    return ("exit %d (%s)" % (code, m.group(1))) if m else "exit %d" % code


def sanitizer_findings(log):
    """compute-sanitizer findings: each report line with the first file:line that follows."""
    findings = []
    lines = log.splitlines()
    summary = ""
    for i, line in enumerate(lines):
        if not line.startswith("========="):
            continue
        body = line.strip("= ").strip()
        if body.startswith(("ERROR SUMMARY", "RACECHECK SUMMARY", "LEAK SUMMARY")):
            summary = body
            continue
        if re.match(r"(Invalid |Error:|Race reported|Leaked |Program hit|Malloc/Free|"
                    r"Uninitialized|Barrier|Warning:)", body):
            where = ""
            for t in [line] + lines[i + 1:i + 8]:
                m = FILE_LINE.search(t)
                if m:
                    where = short_path(m.group(1)) + ":" + m.group(2)
                    # memcheck: "at kernel(...)+0x60 in file:line"; racecheck: "file:line:kernel("
                    k = (re.match(r":([\w:]+)\(", t[m.end():]) or
                         re.search(r"\bat ([\w:]+)\(", t))
                    if k:
                        where += " (" + k.group(1).split("::")[-1] + ")"
                    break
            what = re.split(r" at 0x| in /", body)[0]  # the kind of finding, without addresses
            findings.append((what[:160], where))
    return findings, summary


def load_jsonl(path):
    rows = []
    for line in read(path).splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            pass
    return rows


def table_lines(log):
    """The result table and profile blocks of an nd-bench-train log."""
    keep = []
    on = False
    for line in log.splitlines():
        if line.startswith("network "):
            on = True
        if line.startswith("nd-bench-train:") and on:
            keep.append(line)
            break
        if on and line.strip():
            keep.append(line.rstrip())
    return keep


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget", type=int, default=420)
    ap.add_argument("--dry-run", type=int, default=0)
    a = ap.parse_args()
    work, dry = a.work, bool(a.dry_run)

    steps = read_tsv(os.path.join(work, "steps.tsv"))
    cases = []
    for path in sorted(glob.glob(os.path.join(work, "cases", "*.tsv"))):
        for row in read_tsv(path):
            if len(row) >= 5:
                group, idx, rc, secs, name = row[:5]
                log = read(path[:-4] + ".log")
                cases.append({"group": group, "index": idx, "rc": rc, "seconds": secs,
                              "name": name, "log": log})

    gpu = read(os.path.join(work, "gpu.txt")).strip()  # nvidia-smi: name, driver, memory
    title = gpu if gpu else ("no GPU (dry run)" if dry else "no GPU found")

    text = []
    failures = 0
    step_json = []
    for row in steps:
        name, status = row[0], row[1] if len(row) > 1 else "?"
        if name == "total":
            continue
        rc = row[2] if len(row) > 2 else "-"
        secs = row[3] if len(row) > 3 else "0"
        note = row[4] if len(row) > 4 else ""
        step_json.append({"step": name, "status": status, "rc": rc, "seconds": secs,
                          "note": note})
        if status not in ("ok",):
            failures += 1
    total = next((r[3] for r in steps if r[0] == "total" and len(r) > 3), "?")

    # Cases by group: passed, skipped (77 = no device: only acceptable in a dry run), failed.
    groups = {}
    case_json = []
    for c in cases:
        g = groups.setdefault(c["group"], {"passed": 0, "failed": 0, "skipped": 0, "missing": 0})
        if c["rc"] == "0":
            g["passed"] += 1
            status = "passed"
        elif c["rc"] == "77":
            g["skipped"] += 1
            status = "skipped"
        elif c["rc"] == "skipped":
            g["missing"] += 1
            status = "not run (out of time)"
        else:
            g["failed"] += 1
            status = "failed"
        c["status"] = status
        entry = {k: c[k] for k in ("group", "name", "rc", "seconds", "status")}
        if status == "failed":
            entry["reason"] = crash_reason(c["rc"], c["log"])
            entry["failures"] = catch_failures(c["log"])
            if c["group"] != "tests":
                entry["sanitizer"] = [list(f) for f in sanitizer_findings(c["log"])[0]]
        case_json.append(entry)
    for name, g in groups.items():
        if g["failed"] or g["missing"] or (g["skipped"] and not dry):
            failures += 1

    verdict = "PASS" if failures == 0 else "FAIL"
    text.append("== gpu_check%s: %s; %s s of the %d s budget; verdict %s" %
                (" --dry-run" if dry else "", title, total, a.budget, verdict))
    text.append("steps:")
    for s in step_json:
        text.append("  %-20s %-8s %5s s  %s" % (s["step"], s["status"], s["seconds"], s["note"]))
    text.append("test cases by group (passed / failed / skipped / not run):")
    for name, g in groups.items():
        text.append("  %-10s %d / %d / %d / %d" % (name, g["passed"], g["failed"], g["skipped"],
                                                 g["missing"]))
    if dry:
        text.append("  (dry run: no GPU, so every CUDA case reports skipped by design)")

    # Failing cases, the plain tests first; cases that failed with the same first line (a
    # systemic cause such as no device or a library that does not load) are quoted once.
    order = {"tests": 0, "memcheck": 1, "racecheck": 2}
    failing = sorted((c for c in case_json if c["status"] == "failed"),
                     key=lambda c: (order.get(c["group"], 3), c["name"]))
    by_cause = {}
    for c in failing:
        blocks = c.get("failures", [])
        first = blocks[0][-1] if blocks and blocks[0] else c["reason"]
        by_cause.setdefault(first, []).append(c)
    if failing:
        text.append("failing cases:")
        quoted = 0
        for c in failing:
            blocks = c.get("failures", [])
            first = blocks[0][-1] if blocks and blocks[0] else c["reason"]
            same = by_cause[first]
            if len(same) > 3:
                if same[0] is c:
                    text.append("  %d cases failed alike (%s, ...): %s" %
                                (len(same), "; ".join("[%s] %s" % (x["group"], x["name"])
                                                      for x in same[:3]), first.strip()))
                continue
            if quoted >= MAX_CASES:
                continue
            quoted += 1
            text.append("  [%s] %s: %s, %s s" % (c["group"], c["name"], c["reason"], c["seconds"]))
            for block in blocks[:2]:
                for line in block:
                    text.append("      " + line)
            for what, where in c.get("sanitizer", [])[:4]:
                text.append("      sanitizer: %s at %s" % (what, where or "?"))
        alike = sum(len(v) for v in by_cause.values() if len(v) > 3)
        if len(failing) - alike > quoted:
            text.append("  ... and %d more (summary.json, cases/*.log)" %
                        (len(failing) - alike - quoted))

    # The last lines of every other failed or timed-out step's log.
    for st in step_json:
        if st["status"] in ("fail", "timeout") and st["step"] not in groups:
            tail = [l for l in read(os.path.join(work, "logs", st["step"] + ".log")).splitlines()
                    if l.strip()][-3:]
            if tail:
                text.append("%s (%s):" % (st["step"], st["status"]))
                text.extend("  " + l[:200] for l in tail)

    # Sanitizer findings, deduplicated by (finding, place) over all cases.
    seen = {}
    for c in cases:
        if c["group"] in ("memcheck", "racecheck"):
            found, summary = sanitizer_findings(c["log"])
            for what, where in found:
                key = (c["group"], what.split(" at ")[0][:80], where)
                seen.setdefault(key, []).append(c["name"])
    sanitizer_json = [{"tool": k[0], "finding": k[1], "where": k[2], "cases": v}
                      for k, v in seen.items()]
    if sanitizer_json:
        text.append("sanitizer findings:")
        for f in sanitizer_json[:20]:
            text.append("  %s: %s at %s (%d case(s), e.g. %s)" %
                        (f["tool"], f["finding"], f["where"] or "?", len(f["cases"]),
                         f["cases"][0]))

    bench = {}
    for tag, label in (("train", "FP32"), ("train_tf32", "TF32"), ("train_profile", "profile")):
        log = read(os.path.join(work, "logs", "bench_%s.log" % tag))
        if log:
            text.append("nd-bench-train, %s:" % label)
            text.extend("  " + l for l in table_lines(log)[:60])
        bench[tag] = load_jsonl(os.path.join(work, "bench", "%s.jsonl" % tag))
    dlog = read(os.path.join(work, "logs", "bench_deconv.log"))
    if dlog:
        bad = [l for l in dlog.splitlines() if "FAIL" in l]
        last = [l for l in dlog.splitlines() if l.startswith("bench_deconv:")]
        text.append("nd-bench-deconv --quick: " + (last[-1] if last else "no summary line"))
        text.extend("  " + l[:200] for l in bad[:8])

    mlp = []
    for norm in ("none", "bn", "nd"):
        log = read(os.path.join(work, "logs", "mlp_%s.log" % norm))
        m = re.search(r"epoch\s+1 .*", log)
        err = re.search(r"nd-train: .*error.*", log)
        mlp.append({"norm": norm, "epoch": m.group(0) if m else None,
                    "error": err.group(0) if err else None})
        if m or err:
            text.append("mlp --norm %-4s %s" % (norm, (m.group(0) if m else err.group(0))[:200]))

    out = "\n".join(text)
    if len(out) > SUMMARY_LIMIT:
        out = out[:SUMMARY_LIMIT - 80] + "\n... (summary cut at %d characters; see summary.json)" \
            % SUMMARY_LIMIT
    print(out)
    with open(os.path.join(work, "summary.txt"), "w") as f:
        f.write(out + "\n")
    summary = {"verdict": verdict, "dry_run": dry, "machine": title, "total_seconds": total,
               "budget_seconds": a.budget, "steps": step_json, "groups": groups,
               "cases": case_json, "sanitizer": sanitizer_json, "bench_train": bench,
               "mlp": mlp}
    with open(os.path.join(a.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
