"""Benchmarks: optimizers compared by query count on the same problems, budgets and seeds.

>>> from mango import bench
>>> recs = bench.run_benchmark(bench.suites.get("quick"), "random,cma", seeds=2,
...                            budgets=[50, 100], out="/tmp/b", progress=False)   # doctest: +SKIP
>>> bench.metrics.markdown_report(recs)                                          # doctest: +SKIP

See :mod:`mango.bench.problems` (problems, normalization, noise),
:mod:`mango.bench.runner` (executors, resume, seeding), :mod:`mango.bench.metrics`
(anytime values, ERT, ECDF, bootstrap CIs) and :mod:`mango.bench.plots`.
"""

from . import metrics, suites
from .problems import Built, Problem, build, register_kind
from .record import BudgetRow, RunRecord
from .runner import OptimizerSpec, load_records, parse_optimizers, run_benchmark, run_one, run_seed

__all__ = ["Problem", "Built", "build", "register_kind", "OptimizerSpec", "parse_optimizers", "run_seed",
           "run_one", "run_benchmark", "load_records", "RunRecord", "BudgetRow", "suites", "metrics"]
