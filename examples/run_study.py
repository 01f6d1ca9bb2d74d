"""Run examples/study.toml from Python and print bias, RMSE and coverage.

    python examples/run_study.py out/small_clusters
"""

import sys
from pathlib import Path

from glmmbench.harness import compare
from glmmbench.harness.spec import load_spec, run_spec
from glmmbench.harness.store import Store

out = Path(sys.argv[1] if len(sys.argv) > 1 else "out/small_clusters")
spec = load_spec(Path(__file__).with_name("study.toml"))
summary = run_spec(spec, out, workers=None, progress=True)
print(f"{summary['run']} fits run, {summary['failures']} failures; report in {out}")
with Store(out / "study.sqlite") as store:
    fits = store.frame()
print(compare.recovery(fits).to_string(index=False))
