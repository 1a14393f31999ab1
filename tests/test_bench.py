"""Tests of mango.bench: problems, runner (local / Dask, resume), metrics, CLI."""

from __future__ import annotations

import concurrent.futures as cf
import json
import math
import os

import numpy as np
import pytest

import mango

from mango import bench
from mango.bench import metrics
from mango.bench.problems import Problem, build
from mango.bench.runner import OptimizerSpec, parse_optimizers, run_one, run_seed
from mango.errors import ConfigError, UnknownNameError
from mango.optimizers.random_search import RandomSearch

pytest.importorskip("pandas")

SPHERE = Problem.make("sphere-6", "function", fn="sphere", dim=6)
CODEBOOK = Problem.make("codebook-8", "function", fn="codebook", dim=8)


class SerialExecutor(cf.Executor):
    """Runs each task at submit (in this process) and counts submissions."""

    def __init__(self):
        self.submitted = []

    def submit(self, fn, *args, **kwargs):
        self.submitted.append(args)
        fut = cf.Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # pragma: no cover - surfaced by fut.result()
            fut.set_exception(exc)
        return fut


def _numbers(records):
    return sorted((r["problem"], r["optimizer"], r["seed"], row["budget"], row["best_value"], row["observed"],
                   row["normalized"]) for r in records for row in r["rows"])


# -- problems ---------------------------------------------------------------------------------------

def test_problem_is_small_hashable_and_validated():
    p = Problem.make("x", "function", fn="sphere", dim=3)
    assert hash(p) == hash(Problem.make("x", "function", dim=3, fn="sphere"))
    assert p.kw == {"fn": "sphere", "dim": 3}
    with pytest.raises(UnknownNameError, match="noise"):
        Problem.make("x", "function", noise="poison", fn="sphere")
    with pytest.raises(UnknownNameError, match="problem kind"):
        Problem.make("x", "fuction", fn="sphere")
    with pytest.raises(ConfigError, match="bad parameters"):
        build(Problem.make("bad", "function", fn="sphere", dimension=3))


def test_function_reference_normalizes_random_to_zero_and_optimum_to_one():
    b = build(SPHERE)
    assert b.ref_max == 0.0 and b.ref_low < 0
    assert b.normalize(0.0) == pytest.approx(1.0)
    assert b.normalize(b.ref_low) == pytest.approx(0.0)
    g = build(Problem.make("r-grid", "function", fn="rastrigin", dim=3, levels=9))
    assert g.space.kind == "grid"
    # the grid's middle level of [-5.12, 5.12] is 0, near the optimum at 0.3
    assert g.clean(np.full((1, 3), 4))[0] > g.clean(np.zeros((1, 3), int))[0]


# -- optimizers and seeds ---------------------------------------------------------------------------

def test_parse_optimizers_with_parameters():
    specs = parse_optimizers("random, cma,protes[k=10;k_top=1],ng:NGOpt")
    assert [s.label for s in specs] == ["random", "cma", "protes[k=10;k_top=1]", "ng:NGOpt"]
    assert specs[2].name == "protes" and specs[2].kw == {"k": 10, "k_top": 1}
    with pytest.raises(ConfigError, match="unique"):
        parse_optimizers("cma,cma")
    with pytest.raises(ConfigError, match="key=value"):
        parse_optimizers("cma[sigma]")


def test_run_seed_is_deterministic_and_distinct():
    assert run_seed("a", "cma", 0) == run_seed("a", "cma", 0)
    seeds = {run_seed(p, o, s) for p in "ab" for o in ("cma", "ga") for s in range(5)}
    assert len(seeds) == 20
    assert all(0 <= s < 2**31 for s in seeds)


# -- one run ----------------------------------------------------------------------------------------

def test_run_one_is_seeded_and_anytime():
    spec = OptimizerSpec("random", "random")
    a = run_one(SPHERE, spec, 3, [30, 120])
    b = run_one(SPHERE, spec, 3, [120, 30])
    assert _numbers([a]) == _numbers([b])
    short = run_one(SPHERE, spec, 3, [30])
    # the value at 30 queries of the 120-query run is that of a 30-query run
    assert short["rows"][0]["best_value"] == a["rows"][0]["best_value"]
    assert a["rows"][0]["best_value"] <= a["rows"][1]["best_value"]
    assert [r["queries"] for r in a["rows"]] == [30, 120]
    assert a["rows"][1]["best_value"] == pytest.approx(max(a["curve_v"]))
    assert a["rows"][1]["optimizer_s"] >= a["rows"][0]["optimizer_s"] >= 0
    other = run_one(SPHERE, spec, 4, [30, 120])
    assert other["rows"][1]["best_value"] != a["rows"][1]["best_value"]


def test_budget_aware_optimizers_are_run_once_per_budget():
    """NGOpt picks its algorithm from the budget: its value at 30 must be that of a run told 30, never an
    anytime read of the run told 120."""
    from mango.bench.problems import objective_for_run
    from mango.bench.runner import budget_aware

    assert budget_aware("ng:NGOpt") and budget_aware("ng:Portfolio")
    assert not budget_aware("random") and not budget_aware("cma") and not budget_aware("surrogate")
    spec = OptimizerSpec("ng:NGOpt", "ng:NGOpt")
    rec = run_one(SPHERE, spec, 1, [30, 120])
    assert rec["fixed_budget"]
    rs = run_seed(SPHERE.name, "ng:NGOpt", 1)
    for row in rec["rows"]:
        objective, built = objective_for_run(SPHERE, rs)
        own = mango.maximize(objective, built.space, optimizer="ng:NGOpt", budget=row["budget"], seed=rs,
                             progress=False)
        assert row["best_value"] == pytest.approx(own.best_value) and row["queries"] == own.n_queries
    assert not run_one(SPHERE, OptimizerSpec("cma", "cma"), 1, [30, 120])["fixed_budget"]


class _BudgetReader(RandomSearch):
    """Random search that searches near the optimum only when told a large budget."""

    name = "budget-reader"
    budget_aware = True

    def _ask(self, n):
        pts = self.space.sample(n, self.rng)
        return pts * (0.01 if self.budget >= 100 else 1.0)


def test_runner_acts_on_budget_awareness(monkeypatch):
    from mango.bench.problems import objective_for_run
    from mango.optimizers import registry

    monkeypatch.setitem(registry._REGISTRY, "budget-reader", _BudgetReader)
    rec = run_one(SPHERE, OptimizerSpec("budget-reader", "budget-reader"), 0, [30, 120])
    assert rec["fixed_budget"]
    rs = run_seed(SPHERE.name, "budget-reader", 0)
    objective, built = objective_for_run(SPHERE, rs)
    own = mango.maximize(objective, built.space, optimizer="budget-reader", budget=30, seed=rs, progress=False)
    assert rec["rows"][0]["best_value"] == own.best_value  # the run told 30
    monkeypatch.setattr(_BudgetReader, "budget_aware", False)
    anytime = run_one(SPHERE, OptimizerSpec("budget-reader", "budget-reader"), 0, [30, 120])
    assert not anytime["fixed_budget"]
    assert anytime["rows"][0]["best_value"] != own.best_value  # the read of the run told 120 the rule prevents


def test_noisy_run_is_scored_by_the_noiseless_value_of_its_recommendation():
    p = Problem.make("sphere-noisy", "function", noise="gaussian", sigma=0.3, fn="sphere", dim=6)
    rec = run_one(p, OptimizerSpec("random", "random"), 0, [100])
    row = rec["rows"][0]
    assert row["observed"] != row["best_value"]  # the optimizer saw noisy values
    # best_value is the clean value of one of the points, and normalization uses it
    assert row["best_value"] <= 0.0
    assert row["normalized"] == pytest.approx(build(p).normalize(row["best_value"]))
    again = run_one(p, OptimizerSpec("random", "random"), 0, [100])
    assert _numbers([rec]) == _numbers([again])  # noise is seeded by the run seed


def test_continuous_optimizer_on_codebook_is_skipped_not_failed():
    rec = run_one(CODEBOOK, OptimizerSpec("cma", "cma"), 0, [20])
    assert rec["skipped"] and rec["rows"] == []
    ok = run_one(CODEBOOK, OptimizerSpec("ga", "ga"), 0, [20])
    assert "skipped" not in ok and len(ok["rows"]) == 1


def test_optimizer_too_large_for_the_machine_is_skipped_not_failed(monkeypatch):
    pytest.importorskip("nevergrad")
    from mango.optimizers import nevergrad_opt

    monkeypatch.setattr(nevergrad_opt, "_memory_limit", lambda: 1000)  # a machine with 2 kB of memory
    rec = run_one(CODEBOOK, parse_optimizers("ng:CMA")[0], 0, [20])
    assert rec["rows"] == [] and "full-covariance CMA-ES" in rec["skipped"]
    ok = run_one(CODEBOOK, parse_optimizers("ng:NGOpt")[0], 0, [20])  # no CMA-ES at 20 queries
    assert "skipped" not in ok and len(ok["rows"]) == 1


class _DiesOnSecondRun(SerialExecutor):
    """Runs the first task; the second one's worker is "killed": its future raises BrokenProcessPool."""

    def submit(self, fn, *args, **kwargs):
        if self.submitted:
            self.submitted.append(args)
            fut = cf.Future()
            from concurrent.futures.process import BrokenProcessPool

            fut.set_exception(BrokenProcessPool("A process in the process pool was terminated"))
            return fut
        return super().submit(fn, *args, **kwargs)


def test_a_dead_worker_is_a_clear_error_and_finished_runs_are_kept(tmp_path):
    from mango.errors import WorkerDiedError

    with pytest.raises(WorkerDiedError, match="died abruptly.*sphere-6 / ga / seed 0.*1 finished runs are kept"):
        bench.run_benchmark([SPHERE], "random,ga", 1, [20], tmp_path, executor=_DiesOnSecondRun(), progress=False)
    kept = bench.load_records(tmp_path)
    assert [(r["optimizer"], r["seed"]) for r in kept] == [("random", 0)]
    ex = SerialExecutor()  # the rerun resumes: only the lost run is redone
    recs = bench.run_benchmark([SPHERE], "random,ga", 1, [20], tmp_path, executor=ex, progress=False)
    assert len(ex.submitted) == 1 and len(recs) == 2


# -- runner: resume, Dask ---------------------------------------------------------------------------

def test_run_benchmark_writes_csv_and_resumes(tmp_path):
    ex = SerialExecutor()
    recs = bench.run_benchmark([SPHERE, CODEBOOK], "random,ga", 2, [20, 40], tmp_path, executor=ex,
                               progress=False)
    assert len(ex.submitted) == 8 and len(recs) == 8
    lines = (tmp_path / "results.csv").read_text().splitlines()
    assert lines[0].split(",") == bench.runner.CSV_COLUMNS
    assert len(lines) == 1 + 8 * 2
    # resume: nothing to do
    ex2 = SerialExecutor()
    recs2 = bench.run_benchmark([SPHERE, CODEBOOK], "random,ga", 2, [20, 40], tmp_path, executor=ex2,
                                progress=False)
    assert ex2.submitted == [] and _numbers(recs2) == _numbers(recs)
    # a duplicated line (two invocations sharing a directory) is read once
    jl = (tmp_path / "results.jsonl").read_text().splitlines()
    (tmp_path / "results.jsonl").write_text("\n".join(jl + jl[:1]) + "\n")
    assert _numbers(bench.load_records(tmp_path)) == _numbers(recs)
    (tmp_path / "results.jsonl").write_text("\n".join(jl) + "\n")
    # a lost run (and a truncated last line) is redone, and only it
    jl = (tmp_path / "results.jsonl").read_text().splitlines()
    (tmp_path / "results.jsonl").write_text("\n".join(jl[:-1]) + "\n" + jl[-1][:40])
    ex3 = SerialExecutor()
    recs3 = bench.run_benchmark([SPHERE, CODEBOOK], "random,ga", 2, [20, 40], tmp_path, executor=ex3,
                                progress=False)
    assert len(ex3.submitted) == 1 and _numbers(recs3) == _numbers(recs)
    assert len((tmp_path / "results.csv").read_text().splitlines()) == 1 + 8 * 2
    # a larger budget than recorded reruns everything
    ex4 = SerialExecutor()
    bench.run_benchmark([SPHERE], "random", 1, [20, 80], tmp_path / "b", executor=ex4, progress=False)
    bench.run_benchmark([SPHERE], "random", 1, [20, 160], tmp_path / "b", executor=ex4, progress=False)
    assert len(ex4.submitted) == 2


def test_run_benchmark_rejects_bad_input(tmp_path):
    with pytest.raises(UnknownNameError, match="optimizer"):
        bench.run_benchmark([SPHERE], "cmaa", 1, [10], tmp_path, executor=SerialExecutor(), progress=False)
    with pytest.raises(ConfigError, match="budgets"):
        bench.run_benchmark([SPHERE], "random", 1, [0], tmp_path, executor=SerialExecutor(), progress=False)
    with pytest.raises(ConfigError, match="unique"):
        bench.run_benchmark([SPHERE, SPHERE], "random", 1, [10], tmp_path, executor=SerialExecutor(),
                            progress=False)
    with pytest.raises(UnknownNameError, match="suite"):
        bench.suites.get("quik")


def test_lab_suite_covers_the_lab_problems_and_reads_snn_outputs_by_membrane(capsys):
    from mango.bench.problems import zoo_oracle
    from mango.cli.maximize import main

    probs = {p.name: p for p in bench.suites.get("lab")}
    assert set(probs) == {"snn-out3@vq", "snn-out3@vqemb", "snn-l2u7@gan", "cnn-out7@vqemb", "cnn-r2u4@gan64",
                          "cnn-out7@grat", "cnn-fc1u9@vqemb+poisson"}
    assert bench.suites.DEFAULT_OPTIMIZERS["lab"] == bench.suites.PAPER_OPTIMIZERS
    gens = {p.kw["generator"] for p in probs.values()}
    assert {"vqvae-digits:codes", "vqvae-digits:embedding", "gan-digits", "gan-digits:64", "grating"} <= gens
    assert [p.name for p in probs.values() if p.noise == "poisson"] == ["cnn-fc1u9@vqemb+poisson"]
    # the SNN output neuron is read out by its membrane potential (its spike rate saturates); hidden by rate
    for name, p in probs.items():
        want = "membrane" if name.startswith("snn-out") else None
        assert p.kw.get("readout") == want, name
    assert all(p.kw["readout"] == "membrane" for p in bench.suites.get("zoo") if p.name.startswith("snn-out"))
    kw = probs["snn-out3@vq"].kw
    oracle = zoo_oracle(kw["model"], kw["layer"], kw["unit"], "cpu", kw["readout"])
    assert oracle.readout_kind == "membrane"
    assert zoo_oracle("snn-digits", "lif2", 7, "cpu").readout_kind == "rate"
    with pytest.raises(ConfigError, match="spiking networks only"):
        zoo_oracle("cnn-digits", "output", 7, "cpu", "membrane")
    assert main(["bench", "--suite", "lab", "--list", "--out", "unused"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == list(probs)


def test_quick_suite_on_dask_localcluster_matches_local_executor(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    problems = bench.suites.get("quick")
    opts = bench.suites.DEFAULT_OPTIMIZERS["quick"]
    local = bench.run_benchmark(problems, opts, 2, [30, 60], tmp_path / "local", workers=2, progress=False)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        remote = bench.run_benchmark(problems, opts, 2, [30, 60], tmp_path / "dask",
                                     executor=client.get_executor(), progress=False)
    assert len(local) == len(problems) * 3 * 2
    assert _numbers(local) == _numbers(remote)
    assert [r["curve_v"] for r in local] == [r["curve_v"] for r in remote]


# -- metrics ----------------------------------------------------------------------------------------

def _rec(problem, opt, seed, qs, vs, n=100, low=0.0):
    return {"problem": problem, "optimizer": opt, "seed": seed, "curve_q": qs, "curve_v": vs, "n_queries": n,
            "ref_low": low, "ref_max": 1.0, "optimizer_s": 0.1, "oracle_s": 0.2, "wall_s": 1.0,
            "problem_spec": {"name": problem, "kind": "function", "family": "f"},
            "curve_n": vs, "rows": [{"problem": problem, "optimizer": opt, "seed": seed, "budget": n,
                                     "best_value": vs[-1], "normalized": vs[-1]}]}


def test_ert_counts_failures_with_their_budget():
    recs = [_rec("p", "a", 0, [10, 50], [0.5, 1.0]), _rec("p", "a", 1, [5], [0.6]),
            _rec("p", "b", 0, [1], [0.2])]
    e = metrics.ert(recs, targets=[0.55, 1.0]).set_index(["optimizer", "target"])
    # target 0.55: seed 0 hits at 50, seed 1 at 5 -> (50 + 5) / 2
    assert e.loc[("a", 0.55), "ert"] == pytest.approx(27.5)
    # target 1.0: seed 0 hits at 50, seed 1 fails (100 spent) -> 150 / 1
    assert e.loc[("a", 1.0), "ert"] == pytest.approx(150.0)
    assert e.loc[("b", 1.0), "ert"] == math.inf and e.loc[("b", 1.0), "successes"] == 0
    q, fr = metrics.ecdf(recs, targets=[0.55, 1.0], queries=[4, 5, 50, 100])
    assert fr["a"].tolist() == [0.0, 0.25, 0.75, 0.75]
    assert fr["b"].tolist() == [0.0, 0.0, 0.0, 0.0]


def test_bootstrap_ci_is_seeded_and_brackets_the_median():
    x = np.random.default_rng(1).normal(size=40)
    m, lo, hi = metrics.bootstrap_median_ci(x, seed=3)
    assert (m, lo, hi) == metrics.bootstrap_median_ci(x, seed=3)
    assert lo <= m <= hi and m == pytest.approx(np.median(x))
    assert all(math.isnan(v) for v in metrics.bootstrap_median_ci([]))


def test_report_tables_and_figures(tmp_path):
    recs = bench.run_benchmark([SPHERE, CODEBOOK], "random,ga,cma", 2, [20, 60], tmp_path, executor=SerialExecutor(),
                               progress=False)
    text = metrics.markdown_report(recs)
    assert "| random |" in text and "60 queries" in text
    assert "cma on codebook-8" in text  # the skipped pair is named
    assert "group 1 of 2" in text and "group 2 of 2" in text  # pooled only over comparable problems
    w = metrics.winners(metrics.rows(recs))
    assert set(w["budget"]) == {20, 60}
    from mango.cli.bench import write_outputs

    write_outputs(recs, str(tmp_path), command="mango bench test")
    for f in ("report.md", "anytime.png", "ecdf.png"):
        assert (tmp_path / f).stat().st_size > 1000


def test_cli_bench(tmp_path, capsys):
    from mango.cli.maximize import main

    out = tmp_path / "cli"
    rc = main(["bench", "--suite", "quick", "--problems", "sphere-box10", "--optimizers", "random,ga",
               "--seeds", "1", "--budgets", "10,20", "--out", str(out), "--workers", "1"])
    assert rc == 0
    assert "Winner per budget" in capsys.readouterr().out
    rows = (out / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 2
    assert main(["bench", "--suite", "quick", "--problems", "nope", "--out", str(out)]) == 2
    assert main(["bench", "--suite", "quick", "--budgets", "a,b", "--out", str(out)]) == 2
    assert main(["bench", "--suite", "quick", "--report-only", "--out", str(out)]) == 0


def test_a_failing_run_is_reported_and_retried_not_fatal(tmp_path):
    bad = Problem.make("bad-fn", "function", fn="sphere", dim=3, nonsense=1)
    with pytest.warns(RuntimeWarning, match="bad-fn"):
        recs = bench.run_benchmark([SPHERE, bad], "random", 1, [10], tmp_path, executor=SerialExecutor(),
                                   progress=False)
    assert [r["problem"] for r in recs] == ["sphere-6"]
    err = [json.loads(l) for l in (tmp_path / "errors.jsonl").read_text().splitlines()]
    assert err[0]["problem"] == "bad-fn" and "bad parameters" in err[0]["error"]
    ex = SerialExecutor()
    with pytest.warns(RuntimeWarning):
        bench.run_benchmark([SPHERE, bad], "random", 1, [10], tmp_path, executor=ex, progress=False)
    assert len(ex.submitted) == 1  # only the failed run is retried


def test_records_are_typed_and_older_files_load(tmp_path):
    from mango.bench.record import BudgetRow, RunRecord, read_csv, write_csv

    row = dict(problem="p,1", family='f"x', noise="none", optimizer="cma", seed=0, run_seed=7, budget=10,
               queries=10, best_value=1.5, observed=float("nan"), normalized=0.25, wall_s=0.1, optimizer_s=0.01,
               oracle_s=0.02)
    old = dict(problem="p,1", problem_spec={"kind": "function"}, optimizer="cma", optimizer_name="cma",
               optimizer_params={}, seed=0, run_seed=7, budgets=[10], n_queries=10, ref_low=0.0, ref_max=1.0,
               curve_q=[1], curve_v=[1.5], curve_n=[0.25], wall_s=0.1, optimizer_s=0.01, oracle_s=0.02, rows=[row])
    rec = RunRecord.from_dict(old)  # written before fixed_budget existed
    assert rec.fixed_budget is None and "fixed_budget" not in rec and rec.to_dict() == old
    assert isinstance(rec.rows[0], BudgetRow) and rec["rows"][0]["budget"] == 10 and rec.key == ("p,1", "cma", 0)
    write_csv([rec], tmp_path / "r.csv")
    text = (tmp_path / "r.csv").read_text().splitlines()
    assert text[1].startswith('"p,1","f""x",none,cma,0,7,10,10,1.5,nan,0.25')  # quoted where needed, nan spelled out
    back = read_csv(tmp_path / "r.csv")[0]
    assert back.problem == "p,1" and back.family == 'f"x' and back.budget == 10 and math.isnan(back.observed)
    skipped = RunRecord.from_dict({**old, "rows": [], "skipped": "why"})
    assert skipped["skipped"] == "why" and "skipped" in skipped and "skipped" not in rec


def test_warm_started_run_screens_first_and_counts_the_screen():
    from mango.bench import suites
    from mango.bench.runner import parse_optimizers, run_one

    problem = {p.name: p for p in suites.get("lab")}["cnn-out7@vqemb"]
    cold, warm = parse_optimizers("cma,cma[warm_start=zoo;warm_n=10]")
    rec = run_one(problem, warm, 0, [12, 30])
    assert [r["queries"] for r in rec["rows"]] == [12, 30]
    rec_cold = run_one(problem, cold, 0, [30])
    # screened digits drive the digit-7 unit far above what 10 random-start CMA-ES queries reach
    assert rec["rows"][0]["best_value"] > rec_cold["curve_v"][0]


def test_population_problem_normalizes_each_unit_by_its_own_reference(tmp_path):
    from mango.bench.problems import zoo_oracle, zoo_reference_images
    from mango.bench.record import RunRecord, read_csv

    units = (0, 3, 7)
    pop = Problem.make("cnn-out037@grat", "zoo", model="cnn-digits", layer="output", unit=list(units),
                       generator="grating")
    single = Problem.make("cnn-out7@grat", "zoo", model="cnn-digits", layer="output", unit=7, generator="grating")
    built = build(pop, "cpu")
    images = zoo_reference_images("cnn-digits")
    ref = np.stack([zoo_oracle("cnn-digits", "output", u, "cpu")(images)[:, 0] for u in units]).max(1)
    np.testing.assert_allclose(built.unit_ref_max, ref)  # one training-image maximum per unit
    assert build(single, "cpu").unit_ref_max is None
    recs = bench.run_benchmark([pop, single], "cma", 1, [20, 40], tmp_path, executor=SerialExecutor(),
                               progress=False, batch_size=10)
    rec = {r.problem: r for r in recs}
    assert rec["cnn-out7@grat"].units is None and "unit_normalized" not in rec["cnn-out7@grat"].rows[0].to_dict()
    p = rec["cnn-out037@grat"]
    assert [u["name"] for u in p.units] == ["output:0", "output:3", "output:7"] and p.n_queries == 40
    for row in p.rows:
        np.testing.assert_allclose(row.unit_normalized, np.asarray(row.unit_best_values) / ref)
        assert row.normalized == pytest.approx(np.median(row.unit_normalized))
        assert row.best_value == pytest.approx(np.median(row.unit_best_values))
    # the last row is the units' best over the whole (noise-free) run, as the campaign itself reports them
    res = mango.maximize(zoo_oracle("cnn-digits", "output", list(units), "cpu"), generator=built.clean.generator,
                         unit=[0, 1, 2], optimizer="cma", budget=40, batch_size=10, seed=p.run_seed, progress=False)
    np.testing.assert_allclose(p.rows[-1].unit_best_values, [u.best_value for u in res.units()])
    assert p.curve_n[-1] == pytest.approx(p.rows[-1].normalized)
    # the files round-trip, and results.csv keeps its columns
    lines = [json.loads(t) for t in (tmp_path / "results.jsonl").read_text().splitlines()]
    back = {d["problem"]: RunRecord.from_dict(d) for d in lines}
    assert back["cnn-out037@grat"].rows[0].unit_normalized == p.rows[0].unit_normalized
    assert back["cnn-out7@grat"].to_dict() == rec["cnn-out7@grat"].to_dict()
    assert {r.problem for r in read_csv(tmp_path / "results.csv")} == {"cnn-out037@grat", "cnn-out7@grat"}
