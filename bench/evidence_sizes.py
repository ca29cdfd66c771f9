"""The labels behind each segment-threshold certification, per data set and cycle, in the stores a
`bench_guarantee.py` run leaves in its work folder (`/tmp/sluice-guarantee-*`): median `n` and how many evidence
rows certified a threshold. Usage: `python bench/evidence_sizes.py /tmp/sluice-guarantee-XXXX [...]`."""

import sqlite3, sys, glob, statistics
for root in sys.argv[1:]:
    ns = {}
    for db in glob.glob(f"{root}/*-margin-*/*.db") + glob.glob(f"{root}/*-margin-*/**/sluice.db", recursive=True):
        con = sqlite3.connect(db)
        rows = con.execute("""SELECT d.cycle, e.n, e.threshold IS NOT NULL FROM routing_decisions d JOIN threshold_evidence e ON e.id = d.evidence_id
                              WHERE e.estimator='clopper_pearson' GROUP BY d.cycle, e.id""").fetchall()
        ds = db.split("/")[-2].split("-")[0]
        for c, n, ok in rows:
            ns.setdefault((ds, c), []).append((n, ok))
    print(root)
    for key in sorted(ns):
        v = ns[key]
        print(key, "median n", statistics.median(x for x, _ in v), "certified", sum(o for _, o in v), "/", len(v))
