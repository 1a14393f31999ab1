"""NWB export (issue 32, item 4): the file validates, and reads back with the store's stimuli, responses and times."""

import json
import sys

import numpy as np
import pytest
import torch

import mango
from mango.cli.maximize import main
from mango.errors import ConfigError
from mango.runs.report.export import to_nwb
from mango.generators.module import ModuleGenerator
from mango.rig import RigOracle, RigServer, Schedule
from mango.rig.simulator import make_present
from mango.spaces import Box
from mango.runs.store import RunStore

pynwb = pytest.importorskip("pynwb")

SUBJECT = {"subject_id": "m01", "species": "Mus musculus", "sex": "F", "age": "P90D",
           "description": "a test subject"}


def two_channels(stimuli):
    flat = stimuli.reshape(len(stimuli), -1)
    return np.stack([flat.mean(1), flat.std(1)], axis=1)


def tiny_images():
    """A generator of 1x4x4 images in [0, 1] from a 3-d latent."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Sigmoid(), torch.nn.Unflatten(1, (1, 4, 4)))
    return ModuleGenerator(net, Box(3, -2, 2))


@pytest.fixture
def rig_store(tmp_path):
    """A 9-query run through a rig that shows each stimulus 2 ms (1 ms blank) and reports the times."""
    present = make_present(two_channels, schedule=Schedule(on_ms=2, off_ms=1, seed=0))
    srv = RigServer(present, "tcp://127.0.0.1:0", unit_names=["ch1", "ch2"], input_shape=(1, 4, 4)).start()
    path = tmp_path / "run.sqlite"
    try:
        with RigOracle(srv.endpoint, timeout=5.0) as rig:
            mango.maximize(rig, generator=tiny_images(), unit="ch1", optimizer="random", budget=9, batch_size=3,
                           seed=0, progress=False, store=RunStore(path, stimuli="all"))
    finally:
        srv.stop()
    return path


def read(path):
    io = pynwb.NWBHDF5IO(str(path), "r")
    return io, io.read()


def critical(path):
    from nwbinspector import Importance, inspect_nwbfile

    return [f"{m.check_function_name}: {m.message}" for m in inspect_nwbfile(nwbfile_path=str(path))
            if m.importance == Importance.CRITICAL]


def schema_errors(path):
    out = pynwb.validate(path=str(path))
    return out[0] if isinstance(out, tuple) else out


def test_nwb_file_validates_and_reads_back(rig_store, tmp_path):
    out = tmp_path / "run.nwb"
    assert to_nwb(rig_store, out, subject=SUBJECT, experimenter="Doe, Jane") == str(out)
    assert schema_errors(out) == []
    pytest.importorskip("nwbinspector")
    assert critical(out) == []
    with RunStore(rig_store, mode="r") as s:
        q = s.read_queries()
        stimuli = s.read_stimuli(q["query"])
        t0 = s.sessions()[0]["started"]
        cfg = s.config
    io, nwb = read(out)
    with io:
        table = nwb.intervals["presentations"]
        df = table.to_dataframe()
        assert list(df["query"]) == list(range(9)) and list(df["batch"]) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
        assert list(df["iteration"]) == list(df["batch"]) and df["rig_times"].all() and set(df["session"]) == {1}
        assert not df["reasked"].any()
        assert "the rig's onset and offset" in table.description
        np.testing.assert_allclose(df["start_time"], q["onset"] - t0, rtol=0, atol=1e-6)
        np.testing.assert_allclose(df["stop_time"], q["offset"] - t0, rtol=0, atol=1e-6)
        np.testing.assert_allclose(df["stop_time"] - df["start_time"], 0.002, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(np.stack(df["responses"]), q["responses"])
        np.testing.assert_array_equal(np.stack(df["latent_point"]), q["points"])
        np.testing.assert_array_equal(df["value"], q["values"])
        assert '["ch1", "ch2"]' in table["responses"].description
        images = nwb.stimulus_template["stimuli"]
        assert len(images.images) == 9 and list(df["stimulus_index"]) == list(range(9))
        for i, query in enumerate(q["query"]):
            img = images.order_of_images[i]
            assert img.name == f"query_{query:06d}"
            np.testing.assert_array_equal(img.data[:], np.rint(stimuli[int(query)][0] * 255).astype(np.uint8))
        shown = nwb.stimulus["presented_stimuli"]
        np.testing.assert_array_equal(shown.data[:], np.arange(9))
        np.testing.assert_allclose(shown.timestamps[:], df["start_time"], rtol=0, atol=1e-9)
        notes = json.loads(nwb.notes)
        assert notes["optimizer"] == "random" and notes["config"]["budget"] == 9 == cfg["budget"]
        assert notes["exported_by"] == f"mango {mango.__version__}" and notes["units"] == ["ch1", "ch2"]
        assert nwb.subject.subject_id == "m01" and list(nwb.experimenter) == ["Doe, Jane"]
        assert nwb.session_start_time.timestamp() == pytest.approx(t0, abs=1e-3)


def test_store_without_stimuli_or_rig_times_exports_latent_points(tmp_path):
    path = tmp_path / "plain.sqlite"
    res = mango.maximize(lambda x: -np.sum(x ** 2, axis=1), space=Box(2, -1, 1), optimizer="random", budget=6,
                         batch_size=3, seed=0, progress=False, store=path)
    out = tmp_path / "plain.nwb"
    to_nwb(path, out)
    assert schema_errors(out) == []
    io, nwb = read(out)
    with io:
        table = nwb.intervals["presentations"]
        df = table.to_dataframe()
        assert "no rig times were recorded" in table.description and not df["rig_times"].any()
        assert "stimuli" not in nwb.stimulus_template and list(df["stimulus_index"]) == [-1] * 6
        assert "responses" not in df.columns  # a plain function records no unit responses
        np.testing.assert_array_equal(np.stack(df["latent_point"]), res.points)
        start, stop = df["start_time"].to_numpy(), df["stop_time"].to_numpy()
        assert np.all(np.diff(start) >= 0) and np.all(stop >= start) and start[0] >= 0


def test_cli_export_nwb(rig_store, tmp_path, capsys):
    out = tmp_path / "cli.nwb"
    assert main(["export", "nwb", str(rig_store), str(out), "--subject", "subject_id=m02",
                 "--field", "lab=Test lab"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    io, nwb = read(out)
    with io:
        assert nwb.subject.subject_id == "m02" and nwb.lab == "Test lab"
    assert main(["export", "nwb", str(rig_store), str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["export", "nwb", str(rig_store), str(out), "--overwrite"]) == 0
    assert main(["export", "nwb", str(tmp_path / "missing.sqlite"), str(tmp_path / "x.nwb")]) == 2
    assert "no run store" in capsys.readouterr().err
    assert main(["export", "nwb", str(rig_store), str(tmp_path / "y.nwb"), "--subject", "oops"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert not (tmp_path / "y.nwb").exists()


def test_missing_pynwb_names_the_extra(rig_store, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynwb", None)
    with pytest.raises(ConfigError, match=r"pip install 'mango-am\[nwb\]'"):
        to_nwb(rig_store, tmp_path / "x.nwb")
