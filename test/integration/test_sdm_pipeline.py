"""SDM without ROS, end to end: the PACS pieces against real servers (Orthanc, dcmtk's storescu, pynetdicom), the
builder's findings-model road, the CLI, and the trained model's accuracy on 200 held-out studies."""
import json
import subprocess
from pathlib import Path

import numpy
import pydicom
import pytest

from helpers.sdm import tango2
from tango2_ros.sdm.findings import Finding
from tango2_ros.sdm.report import disagreements
from tango2_ros.sdm.training import TRAINED_LABELS
from tango2_ros.sdm.volume import Preprocessing, load_study

STORESCU = "/usr/bin/storescu"  # dcmtk's, not the one pynetdicom puts into the venv

def test_receiver_takes_allowed_callers_only_and_dicomweb_round_trip(series, tmp_path):
    from tango2_ros.core.net import free_port
    from tango2_ros.sdm.pacs import DicomWebClient, OrthancServer, PacsError, StoreReceiver
    from tango2_ros.sdm.volume import datasets_to_volume

    received = []
    port = free_port()
    receiver = StoreReceiver(lambda datasets, caller: received.append((datasets, caller)), port=port,
                             allowed_aets=("SCANNER",), max_instances=100).start()
    try:
        files = [str(f) for f in sorted(series.iterdir())]
        sent = subprocess.run([STORESCU, "-aet", "SCANNER", "-aec", "TANGO2SDM", "127.0.0.1", str(port), *files],
                              capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0, sent.stderr
        assert len(received) == 1 and received[0][1] == "SCANNER" and len(received[0][0]) == len(files)
        assert numpy.array_equal(datasets_to_volume(received[0][0]).hu, load_study(series).hu)
        refused = subprocess.run([STORESCU, "-aet", "INTRUDER", "-aec", "TANGO2SDM", "127.0.0.1", str(port), files[0]],
                                 capture_output=True, text=True, timeout=60)
        assert refused.returncode != 0 and "Calling AE Title Not Recognized" in refused.stderr
        wrong_called = subprocess.run([STORESCU, "-aet", "SCANNER", "-aec", "OTHER", "127.0.0.1", str(port), files[0]],
                                      capture_output=True, text=True, timeout=60)
        assert wrong_called.returncode != 0
        assert len(received) == 1
    finally:
        receiver.stop()
    orthanc = OrthancServer(tmp_path / "orthanc").start()
    try:
        client = DicomWebClient(orthanc.dicomweb)
        datasets = [pydicom.dcmread(f) for f in files]
        client.store(datasets)
        study_uid, series_uid = datasets[0].StudyInstanceUID, datasets[0].SeriesInstanceUID
        assert [s["0020000E"]["Value"][0] for s in client.series(study_uid)] == [series_uid]
        assert numpy.array_equal(datasets_to_volume(client.retrieve_series(study_uid, series_uid)).hu,
                                 load_study(series).hu)
        with pytest.raises(PacsError, match="404"):
            client.retrieve_series("1.2.3", "4.5.6")
    finally:
        orthanc.stop()
    with pytest.raises(PacsError, match="unreachable"):
        DicomWebClient(orthanc.dicomweb, timeout_s=2).studies()


def test_builder_trains_exports_quantises_and_gates_a_findings_model(tmp_path):
    """The builder's road for a network trained from scratch, at toy size (the real recipe runs at set-up)."""
    from tango2_ros.builder.pipeline import build
    from tango2_ros.builder.recipe import load_recipe
    from tango2_ros.core.artifacts.cache import ArtifactCache
    from tango2_ros.core.artifacts.stores import LocalStore
    from helpers.registry import make_keys
    from tango2_ros.errors import UserError
    from tango2_ros.sdm.findings import FindingsModel

    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(
        "name: ct-toy\nversion: 0.1.0\nbase: new:ct-findings-3d\ndata: {train: 24, tune: 8, eval: 8, seed: 5}\n"
        "training: {epochs: 1, batch_size: 8}\nquantizations: [f32, int8]\nevaluation: {metric: micro_f1}\n"
        "gates: {min_metric: 0.0}\ndevice_profiles: [toy]\n"
        "device_profile_budgets: {toy: {max_file_mb: 5, max_memory_mb: 4096}}\n")
    recipe = load_recipe(recipe_file)
    assert recipe.trained_from_scratch and recipe.task == "classifier" and recipe.eval is None
    trust = make_keys(tmp_path, "fleet")
    store = LocalStore(tmp_path / "store")
    result = build(recipe, store, ArtifactCache(tmp_path / "cache", trust), trust, tmp_path / "keys" / "fleet.key",
                   tmp_path / "work", say=lambda line: None)
    assert [c.label for c in result.candidates] == ["f32", "int8"] and len(result.losses) == 1
    for candidate in result.candidates:
        assert 0.0 <= candidate.evaluation.metric <= 1.0 and candidate.version
        model = FindingsModel(candidate.model)  # the metadata survives quantisation
        assert model.trained == set(TRAINED_LABELS) and model.preprocessing == Preprocessing()
    assert result.tags["best-toy"] in {"0.1.0-f32", "0.1.0-int8"}
    bad = tmp_path / "bad.yaml"
    head = "name: ct-toy\nversion: 0.1.0\nbase: new:ct-findings-3d\n"
    for text, message in (("data: {train: 2, eval: 8}", "data.train must be"),
                          ("data: {eval: 8, colour: 1}", "unknown key"),
                          ("data: {eval: 8}\ntraining: {epochs: 0}", "training.epochs"),
                          ("data: {eval: 8}\ntraining: {warmup: 3}", "unknown key"),
                          ("data: {eval: 8}\nfinetune: {rank: 4}", "trained from scratch"),
                          ("data: {eval: 8}\nevaluation: {metric: retrieval}", "unknown metric"),
                          ("base: new:resnet\ndata: {eval: 8}", "unknown base")):
        bad.write_text(head + text + "\n" if not text.startswith("base") else head.replace(
            "base: new:ct-findings-3d\n", "") + text + "\n")
        with pytest.raises(UserError, match=message):
            load_recipe(bad)


def test_builder_trains_a_vlm_bundle_from_the_findings_model_and_the_language_model(tmp_path):
    """The VLM's road at toy size: the encoder cut from the findings artifact, projector and LoRA trained on
    phantoms, the bundle evaluated through llama.cpp in its own process (read from the registry, nothing
    published)."""
    from tango2_ros import paths
    from tango2_ros.builder.pipeline import build
    from tango2_ros.builder.recipe import load_recipe
    from tango2_ros.core.artifacts.cache import ArtifactCache
    from tango2_ros.core.artifacts.signing import TrustStore
    from tango2_ros.core.artifacts.stores import open_store
    from tango2_ros.errors import UserError
    from tango2_ros.sdm.vlm import ADAPTER_FILE, ENCODER_FILE, PROJECTOR_FILE, CtReportVlm, read_conventions

    recipe_file = tmp_path / "recipe.yaml"
    head = "name: ct-vlm-toy\nversion: 0.1.0\nbase: new:ct-report-vlm\n"
    models = "encoder: ct-findings-phantom@1.1.0-f32, language_model: smollm2-135m-instruct@1.0.0"
    recipe_file.write_text(
        head + "data: {train: 16, eval: 8, seed: 5}\n"
        f"training: {{{models}, steps: 2, align_steps: 1, batch_size: 2, soft_tokens: 2, rank: 2}}\n"
        "evaluation: {metric: vlm_micro_f1}\ngates: {min_metric: 0.0}\n")
    recipe = load_recipe(recipe_file)
    assert recipe.trained_from_scratch and recipe.task == "vlm" and recipe.quantizations == ("f32",)
    trust = TrustStore(paths.trusted_keys_dir())
    result = build(recipe, open_store(paths.default_store()), ArtifactCache(paths.cache_dir(), trust), trust,
                   tmp_path / "no.key", tmp_path / "work", say=lambda line: None, publish=False)
    [candidate] = result.candidates
    assert len(result.losses) == 2 and candidate.evaluation is result.baseline.evaluation
    assert [f.name for f in candidate.files] == [ADAPTER_FILE, ENCODER_FILE, PROJECTOR_FILE]
    assert 0.0 <= candidate.evaluation.metric <= 1.0 and len(candidate.evaluation.outputs) == 8
    assert set(candidate.evaluation.groups) == {"disagreement_rate", "classifier_agreement", "hallucinated_per_report"}
    assert candidate.device_bytes > candidate.ship_bytes  # the base language model is part of what the device holds
    conventions = read_conventions(candidate.model)
    assert conventions.base_model == "smollm2-135m-instruct@1.0.0" and conventions.soft_tokens == 2
    CtReportVlm(candidate.model, candidate.base, threads=1).close()
    for text, message in (("training: {" + models + ", epochs: 3}", "unknown key"),
                          ("training: {encoder: ct.onnx, language_model: smollm2-135m-instruct@1.0.0}",
                           "training.encoder must name an artifact"),
                          ("training: {" + models + ", soft_tokens: 0}", "training.soft_tokens"),
                          ("training: {" + models + "}\nevaluation: {metric: micro_f1}", "unknown metric")):
        recipe_file.write_text(head + "data: {eval: 8}\n" + text + "\n")
        with pytest.raises(UserError, match=message):
            load_recipe(recipe_file)


@pytest.fixture(scope="module")
def findings_model() -> Path:
    from tango2_ros.cli.model_files import model_file
    from tango2_ros.cli.sdm import DEFAULT_FINDINGS_MODEL
    from tango2_ros.errors import UserError

    try:
        return model_file(DEFAULT_FINDINGS_MODEL)[0]
    except UserError as exc:
        pytest.fail(f"the default findings model is not built ({exc}); run make setup")


def test_cli_phantom_report_and_refusals(tmp_path, findings_model):
    made = tango2("sdm", "phantom", str(tmp_path / "study"), "--findings", "consolidation,pleural-effusion",
                  "--seed", "11", "--json")
    assert made.returncode == 0, made.stderr
    truth = json.loads((tmp_path / "study" / "truth.json").read_text())
    assert truth["findings"] == ["Pleural effusion", "Consolidation"] and truth["labels"]["Consolidation"] == 1
    report = tango2("sdm", "report", str(tmp_path / "study" / "series"), "--no-llm", "--json")
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    assert len(data["findings"]) == 18 and {"label", "probability", "present"} <= set(data["findings"][0])
    present = {f["label"] for f in data["findings"] if f["present"]}
    assert present == {"Consolidation", "Pleural effusion"}, data["findings"]
    assert "There is a pleural effusion." in data["findings_text"] and "ct-findings-phantom@" in data["model"]
    assert "PHANTOM" not in report.stdout and "radiologist" in data["disclaimer"]
    text = tango2("sdm", "report", str(tmp_path / "study" / "series"), "--no-llm")
    assert text.stdout.startswith("FINDINGS:") and "IMPRESSION:" in text.stdout
    whole = tango2("sdm", "report", str(tmp_path / "study"), "--no-llm", "--json")  # the folder phantom wrote
    assert whole.returncode == 0 and "skipped (not DICOM): truth.json" in whole.stderr, whole.stderr
    assert json.loads(whole.stdout)["findings"] == data["findings"]
    nifti = tango2("sdm", "phantom", str(tmp_path / "normal"), "--findings", "none", "--format", "nifti")
    assert nifti.returncode == 0 and (tmp_path / "normal" / "study.nii.gz").exists()
    from pydicom.data import get_testdata_file

    for args, words in ((["report", get_testdata_file("CT_small.dcm")], "1 slice"),
                        (["report", str(tmp_path / "absent")], "not found"),
                        (["report", str(tmp_path / "study" / "truth.json")], "expected a DICOM series"),
                        (["report", str(tmp_path / "study" / "series"), "--model", "nothing.onnx"], "no such file"),
                        (["phantom", str(tmp_path / "x"), "--findings", "lung-tumour"], "unknown finding"),
                        (["phantom", str(tmp_path / "x")], "--findings is required"),
                        (["evaluate", str(tmp_path)], "labels.csv is missing")):
        result = tango2("sdm", *args)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and words in lines[0], result.stderr


def test_report_llm_writes_within_the_findings(tmp_path, findings_model):
    """The learned report writer drafts the text by default, and the sentence check leaves its draft as it is;
    with the untrained base model the check corrects it, and either way the result agrees with the findings."""
    tango2("sdm", "phantom", str(tmp_path / "study"), "--findings", "lung-nodule,consolidation", "--seed", "21")
    for llm in (None, "smollm2-135m-instruct@1.0.0"):
        report = tango2("sdm", "report", str(tmp_path / "study" / "series"), "--json", *(["--llm", llm] if llm else []))
        assert report.returncode == 0, report.stderr
        data = json.loads(report.stdout)
        findings = [Finding.from_dict(f) for f in data["findings"]]
        assert disagreements(f"{data['findings_text']}\n{data['impression']}", findings) == []
        if llm is None:
            assert "sdm-report@" in data["model"] and data["corrections"] == [], data
            assert "nodule" in data["impression"].lower() and "consolidation" in data["impression"].lower()
        else:
            assert "smollm2-135m-instruct@" in data["model"]


def test_report_vlm_writes_from_the_volume_and_the_classifier_checks_it(tmp_path, findings_model):
    """`--writer vlm`: the shipped chest-CT VLM reads the volume; the JSON shows its raw text, what it asserts and
    where it differs from the findings model, and the checked text agrees with the findings whatever it wrote.
    Bad bundles and studies are refused in one line, exit 2."""
    import shutil

    from tango2_ros.cli.model_files import model_folder
    from tango2_ros.cli.sdm import DEFAULT_VLM
    from tango2_ros.sdm.labels import LABEL_NAMES
    from tango2_ros.sdm.vlm import PROJECTOR_FILE, answer_assertions, disagreements_with

    tango2("sdm", "phantom", str(tmp_path / "study"), "--findings", "emphysema,pleural-effusion", "--seed", "31")
    report = tango2("sdm", "report", str(tmp_path / "study" / "series"), "--writer", "vlm", "--json")
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    vlm = data["vlm"]
    assert data["writer"] == "vlm" and vlm["model"].startswith("ct-report-vlm@") and vlm["model"] in data["model"]
    assert json.loads(vlm["raw_text"]) and vlm["asserted"] == answer_assertions(vlm["raw_text"])
    assert set(vlm["asserted"]) <= set(LABEL_NAMES)
    findings = [Finding.from_dict(f) for f in data["findings"]]
    assert vlm["disagreements"] == disagreements_with(vlm["asserted"], findings)
    assert disagreements(f"{data['findings_text']}\n{data['impression']}", findings) == []
    bundle = tmp_path / "bundle"
    shutil.copytree(model_folder(DEFAULT_VLM)[0], bundle)
    (bundle / PROJECTOR_FILE).unlink()
    from pydicom.data import get_testdata_file

    series = str(tmp_path / "study" / "series")
    for args, words in ((["--vlm", "smollm2-135m-instruct@1.0.0"], "text-only language model, which cannot read"),
                        (["--vlm", str(tmp_path / "absent")], "no such file"),
                        (["--vlm", str(bundle)], "has no projector (ct-projector.onnx)")):
        result = tango2("sdm", "report", series, "--writer", "vlm", *args)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and words in lines[0], result.stderr
    result = tango2("sdm", "report", get_testdata_file("CT_small.dcm"), "--writer", "vlm")
    assert result.returncode == 2 and "1 slice" in result.stderr and "Traceback" not in result.stderr


def test_held_out_accuracy_on_200_studies(tmp_path, findings_model):
    """Acceptance: micro-F1 >= 0.9 on 200 held-out phantoms (seeds never used in training), text agreement 100 %."""
    made = tango2("sdm", "phantom", str(tmp_path / "set"), "--dataset", "200", "--seed", "5000000")
    assert made.returncode == 0, made.stderr
    result = tango2("sdm", "evaluate", str(tmp_path / "set"), "--no-llm", "--json", timeout=900)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["studies"] == 200 and set(data["assessed_labels"]) == set(TRAINED_LABELS)
    assert data["micro"]["f1"] >= 0.9, data["per_label"]
    assert data["agreement_pct"] == 100.0
    assert data["bleu1"] > 0 and data["rouge_l"] > 0 and data["latency_s"]["mean"] > 0
