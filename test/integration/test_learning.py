"""`tango2 learn` with a domain's teacher, at a tiny scale: the teacher writes held-out sets apart from the
training set, the candidate is judged by the nodes' own check against the base model in service, a candidate
that does not beat it is refused with the figures and nothing is published, and a second run resumes from the
first one's fine-tune instead of training again."""
import json
import os
import subprocess
import sys

import pytest

from tango2_ros.core.artifacts.stores import LocalStore

RECIPE = """name: tiny-bridge
version: 0.1.0
base: smollm2-135m-instruct@1.0.0
teacher: {name: sds-bridge, train: 1, eval: 1, seed: 5, languages: [en]}
finetune: {rank: 2, alpha: 4, steps: 1, batch_size: 1, learning_rate: 0.001}
quantizations: []
evaluation: {metric: fact_check, max_tokens: 24}
gates: {min_metric: 0.0, beat_base: true}
"""


def _learn(recipe, out, env):
    return subprocess.run([sys.executable, "-m", "tango2_ros.cli", "learn", str(recipe), "--out", str(out), "--json"],
                          env=env, capture_output=True, text=True, timeout=600)


def test_a_teacher_recipe_is_taught_judged_against_the_base_and_resumed(tmp_path):
    models = tmp_path / "models"
    env = {**os.environ, "TANGO2_MODELS_DIR": str(models)}
    subprocess.run([sys.executable, "-m", "tango2_ros.cli", "models", "import-defaults"], env=env, check=True,
                   capture_output=True, timeout=120)
    recipe, out = tmp_path / "recipe.yaml", tmp_path / "out"
    recipe.write_text(RECIPE)

    refused = _learn(recipe, out, env)
    assert refused.returncode == 1, refused.stderr[-2000:]
    assert "[1/7] teacher sds-bridge: 1 scenarios to learn from, 1 held out" in refused.stderr
    result = json.loads(refused.stdout)
    lora = next(c for c in result["candidates"] if c["label"] == "lora")
    base = next(c for c in result["candidates"] if c["label"] == "base")
    assert set(lora["groups"]) == {"sds-describe/en", "sds-ask/en"}
    assert "| candidate | sds-ask/en | sds-describe/en |" in (out / "report.md").read_text()
    if lora["metric"] <= base["metric"]:  # a step of rank 2 does not beat the base: refused with both figures
        assert any("is not above the base model's" in f for f in lora["failures"]), lora["failures"]
        assert LocalStore(models / "store").versions("tiny-bridge") == []
    taught = [json.loads(line)["check"]["scenario"] for line in (out / "data" / "train.jsonl").read_text().splitlines()]
    held = [json.loads(line)["check"]["scenario"] for line in (out / "data" / "eval.jsonl").read_text().splitlines()]
    assert taught == ["encounter-5"] * 3 and held == ["encounter-1000005"] * 3  # a description, two questions

    recipe.write_text(RECIPE.replace("beat_base: true", "beat_base: false"))
    resumed = _learn(recipe, out, env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "reusing the fine-tune of a previous run" in resumed.stderr and "fine-tune: 100%" not in resumed.stderr
    store = LocalStore(models / "store")
    assert store.versions("tiny-bridge") == ["0.1.0-lora"]
    manifest = json.loads(store.read_blob(r := store.record("tiny-bridge", "0.1.0-lora"), r.manifest_digest))
    assert manifest["kind"] == "adapter" and {"fact_check", "fact_check_sds-describe/en"} <= set(manifest["metrics"])


def test_a_recipe_whose_teacher_is_unknown_fails_before_anything_runs(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.replace("name: sds-bridge", "name: sds-oracle"))
    done = _learn(recipe, tmp_path / "out", os.environ)
    assert done.returncode == 2 and "unknown teacher 'sds-oracle'" in done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("teacher, held_out_case, group", [
    ("sdm-report", "case-1000003", "sdm-report/en"),  # findings cases, judged by the report's sentence check
    ("sdf-lam-tomato", "tomato-2010-01-26-37", "sdf-lam/en"),  # a held-out day's period, judged against the baseline
])
def test_the_report_writer_and_farm_recipes_at_a_tiny_scale(tmp_path, teacher, held_out_case, group):
    """The chest-CT report writer and the farm's action model go the same path: teacher cases taught, held-out
    cases judged by the domain's check, the adapter published."""
    models = tmp_path / "models"
    env = {**os.environ, "TANGO2_MODELS_DIR": str(models)}
    subprocess.run([sys.executable, "-m", "tango2_ros.cli", "models", "import-defaults"], env=env, check=True,
                   capture_output=True, timeout=120)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.replace("name: tiny-bridge", "name: tiny-model").replace(
        "{name: sds-bridge, train: 1, eval: 1, seed: 5, languages: [en]}", f"{{name: {teacher}, train: 2, eval: 1, seed: 3}}")
        .replace("beat_base: true", "beat_base: false"))
    done = _learn(recipe, tmp_path / "out", env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"[1/7] teacher {teacher}: 2 scenarios to learn from, 1 held out" in done.stderr
    lora = next(c for c in json.loads(done.stdout)["candidates"] if c["label"] == "lora")
    assert set(lora["groups"]) == {group}
    held = [json.loads(line)["check"]["case"] for line in (tmp_path / "out" / "data" / "eval.jsonl").read_text().splitlines()]
    assert held == [held_out_case]
    assert LocalStore(models / "store").versions("tiny-model") == ["0.1.0-lora"]
