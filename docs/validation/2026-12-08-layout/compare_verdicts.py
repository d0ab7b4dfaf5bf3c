"""Compare two runs' results.json: per test the verdict, and per check the metric, its pass/fail, its reference path,
and its message (floats may differ within noise: the HF engine on CPU is deterministic for greedy accuracy)."""
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
def rows(d):
    return {t["nodeid"]: t for t in d["tests"]}
A, B = rows(a), rows(b)
print("tests:", len(A), len(B), "only in base:", sorted(set(A) - set(B)), "only in new:", sorted(set(B) - set(A)))
diff = 0
for k in sorted(set(A) & set(B)):
    x, y = A[k], B[k]
    if x["verdict"] != y["verdict"]:
        print("VERDICT", k, x["verdict"], "->", y["verdict"]); diff += 1
    cx = [(c["metric"], c.get("passed"), c.get("reference"), c.get("bound")) for c in x.get("checks", [])]
    cy = [(c["metric"], c.get("passed"), c.get("reference"), c.get("bound")) for c in y.get("checks", [])]
    if cx != cy:
        print("CHECKS", k, cx, cy); diff += 1
    mx = [c.get("message") for c in x.get("checks", [])]; my = [c.get("message") for c in y.get("checks", [])]
    if mx != my:
        print("MESSAGE", k); [print("   ", p, "\n  ->", q) for p, q in zip(mx, my) if p != q]; diff += 1
print("differences:", diff)
