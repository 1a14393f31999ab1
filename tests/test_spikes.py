"""The ``spikes`` suites: spike-count and rate readouts of the colour and digit SNNs (issue 31)."""

import numpy as np
import pytest

import mango
from mango.bench import suites
from mango.bench.problems import build, objective_for_run
from mango.runs.loop import Callback


def test_spikes_suites_are_count_or_rate_problems_of_both_snns():
    spikes, held = suites.get("spikes"), suites.get("spikes-heldout")
    assert len(spikes) >= 8 and len(held) >= 6
    assert not {p.name for p in spikes} & {p.name for p in held}
    for p in spikes + held:
        assert p.kw["readout"] in ("count", "rate") and p.kw["model"] in ("snn-color", "snn-digits")
    models = {p.kw["model"] for p in spikes}
    gens = {p.kw["generator"] for p in spikes}
    assert models == {"snn-color", "snn-digits"}
    assert {"vqvae-color:codes", "vqvae-color:embedding", "gan-color"} <= gens
    assert any(p.kw["layer"] != "output" for p in spikes if p.kw["model"] == "snn-color")  # hidden units too
    assert sum(p.noise == "poisson" for p in spikes) >= 2 and any(p.noise == "poisson" for p in held)


def test_a_spike_problem_is_quantized_and_normalized_by_the_natural_images():
    p = {q.name: q for q in suites.get("spikes")}["snnc-l2u9c@cvq"]  # the count of one neuron
    built = build(p, "cpu")
    assert built.space.kind == "codebook" and built.space.dim == 64
    assert built.ref_max == np.round(built.ref_max) and built.ref_max > 0  # a spike count
    objective, _ = objective_for_run(p, 0)
    values = np.asarray(objective.evaluate(built.space.sample(20, seed=0))[0], float)
    assert np.all(values == np.round(values)) and np.all(values >= 0)  # counts: integers, many ties
    assert len(np.unique(values)) < len(values)
    rate = {q.name: q for q in suites.get("spikes")}["snnc-out3@cvqemb"]
    b = build(rate, "cpu")
    assert b.space.dim == 4096 and b.info["reference"].startswith("max over")
    vals = np.asarray(b.clean.evaluate(b.space.sample(10, seed=1))[0], float)
    np.testing.assert_allclose(vals * 64, np.round(vals * 64), atol=1e-9)  # rates: multiples of 1/T, T = 64


def test_budget_is_exact_and_a_killed_spikes_run_resumes_identically(tmp_path):
    p = {q.name: q for q in suites.get("spikes")}["snnc-out3@cvq"]
    objective, built = objective_for_run(p, 0)
    kw = dict(optimizer="surrogate", budget=47, batch_size=10, seed=3, progress=False, threads=1)
    full = mango.maximize(objective, space=built.space, **kw)
    assert full.n_queries == 47 and len(full.values) == 47

    class Stop(Callback):
        def on_batch(self, run, batch):
            if batch.index == 2:
                raise KeyboardInterrupt

    path = tmp_path / "run.sqlite"
    part = mango.maximize(objective, space=built.space, store=path, callbacks=[Stop()], **kw)
    assert part.stop_reason == "interrupted" and part.n_queries == 30
    resumed = mango.maximize(objective, space=built.space, store=path, resume=True, **kw)
    assert resumed.n_queries == 47
    np.testing.assert_array_equal(resumed.points, full.points)
    np.testing.assert_array_equal(resumed.values, full.values)


@pytest.mark.slow
def test_spikes_heldout_is_the_declared_seeded_draw():
    assert [tuple(s) for s in suites.draw_spikes_heldout()] == list(suites.SPIKES_HELDOUT)
    assert [p.name for p in suites.get("spikes-heldout")] == [suites._heldout_name(s) for s in suites.SPIKES_HELDOUT]
