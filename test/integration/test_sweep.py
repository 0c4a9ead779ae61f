"""Evaluation sweeps: held-out greenhouse days one after the other here, and as Ray tasks on a local cluster of two
workers (tango2_ros/builder/sweep.py, `tango2 sdf sweep`)."""
import json

from helpers.sdm import tango2

DAYS = "2010-01-26,2009-10-23"
COMPARED = ("steered_in_band_pct", "heating_mj_m2", "electricity_kwh_m2", "co2_kg_m2", "proposals",
            "supervisor_rejections")


def _sweep(*arguments: str) -> dict:
    done = tango2("sdf", "sweep", "--days", DAYS, "--hours", "2", "--spin-up-h", "2", "--json", *arguments,
                  timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_a_sweep_on_two_ray_workers_gives_what_the_same_runs_give_here():
    here, on_ray = _sweep(), _sweep("--cluster", "local:2")
    assert [r["run"]["day"] for r in on_ray["runs"]] == ["2010-01-26", "2009-10-23"]  # in the runs' order
    for alone, distributed in zip(here["runs"], on_ray["runs"]):
        assert {k: alone[k] for k in COMPARED} == {k: distributed[k] for k in COMPARED}
    assert len({r["worker"] for r in on_ray["runs"]}) == 2  # each day on a worker of its own
    assert here["mean_steered_in_band_pct"] == on_ray["mean_steered_in_band_pct"]


def test_a_sweep_says_what_is_wrong_with_its_cluster_or_its_days():
    for arguments, words in ((["--cluster", "somewhere"], "local:N, auto or ray://"),
                             (["--cluster", "local:0"], "local:N with N from 1"),
                             (["--cluster", "ray://127.0.0.1:1"], "cannot join the Ray cluster")):
        result = tango2("sdf", "sweep", "--days", DAYS, "--hours", "1", *arguments, timeout=300)
        assert result.returncode == 2 and words in result.stderr, result.stderr[-2000:]
    outside = tango2("sdf", "sweep", "--days", "2012-01-01", "--hours", "1", "--cluster", "local:1", timeout=300)
    assert outside.returncode == 2 and "Bleiswijk weather covers" in outside.stderr, outside.stderr[-2000:]
