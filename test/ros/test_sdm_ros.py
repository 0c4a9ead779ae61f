"""SDM through real parts: the ct_report node and an llm_node over DDS, dcmtk's storescu as the scanner, Orthanc
as the PACS, the model manager deploying the findings model from the signed registry.

End to end: a synthetic series is sent with storescu, the report (its text by the llm_node) appears on the
topic, as a Comprehensive SR in Orthanc and as a FHIR file. Bad input (another modality, a single slice, missing
slices, an unknown caller, a corrupt or oversized study through the action) fails only that study: the node
keeps serving, nothing is stored for it, and no patient identity reaches the logs or the topic. Then the
findings model is swapped at run time.
"""
import base64
import json
import math
import shutil
import subprocess
import time
from pathlib import Path

import pydicom
import pytest
from rclpy.action import ActionClient

from helpers.diagnostics import DiagnosticsWatcher
from helpers.lifecycle import bring_up
from helpers.registry import llm_arguments, shadow_llm_arguments
from helpers.ros import goal_response, result_of, ros_node, spawn, stop, wait_until
from tango2_msgs.action import ReportCT
from tango2_msgs.msg import CTReport
from tango2_msgs.srv import LoadModel
from tango2_ros.core.net import free_port
from tango2_ros.sdm.findings import Finding
from tango2_ros.sdm.pacs import DicomWebClient, OrthancServer
from tango2_ros.sdm.phantom import Grid, render
from tango2_ros.sdm.report import disagreements
from tango2_ros.sdm.study_files import write_dicom_series, write_nifti

pytestmark = pytest.mark.ros
NS = "/t7sdm"
WRITER = ("n_parallel:=1", "n_ctx_per_seq:=1536")  # an llm_node for the report writer
STORESCU = "/usr/bin/storescu"
SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.33"


def send(folder: Path, port: int, caller: str = "SCANNER") -> subprocess.CompletedProcess:
    return subprocess.run([STORESCU, "-aet", caller, "-aec", "TANGO2SDM", "127.0.0.1", str(port),
                           *map(str, sorted(folder.iterdir()))], capture_output=True, text=True, timeout=120)


def sr_series(client: DicomWebClient, study_uid: str) -> list[dict]:
    try:
        series = client.series(study_uid)
    except Exception:  # noqa: BLE001 - an unknown study is a 404
        return []
    return [s for s in series if s.get("00080060", {}).get("Value", [""])[0] == "SR"]


@pytest.fixture(scope="module")
def findings_models() -> tuple[Path, Path, str]:
    """The builder's best findings model for the hospital edge profile, a second model to swap to, and its version.

    The second one is the recipe's int8 candidate where the builder published it. Its micro-F1 lies close to the
    recipe's gate (0.86 against 0.8 here) and fell below it on one CI machine, which then published only f32: there
    the swap loads the best model's file again as a new version, which exercises the same path through the node.
    """
    from tango2_ros.cli.model_files import model_file
    from tango2_ros.cli.sdm import DEFAULT_FINDINGS_MODEL
    from tango2_ros.errors import UserError

    try:
        best, _, version = model_file(DEFAULT_FINDINGS_MODEL)
    except UserError as exc:
        pytest.fail(f"the findings model is not built ({exc}); run make setup")
    int8_version = version.rsplit("-", 1)[0] + "-int8"
    try:
        return best, model_file(f"ct-findings-phantom@{int8_version}")[0], int8_version
    except UserError:
        return best, best, f"{version}-reloaded"


@pytest.fixture(scope="module")
def hospital(tmp_path_factory, findings_models):
    folder = tmp_path_factory.mktemp("hospital")
    orthanc = OrthancServer(folder / "orthanc").start()
    port = free_port()
    llm = spawn(llm_arguments(NS, *WRITER))
    node = spawn(["-m", "tango2_ros.nodes.ct_report", "--ros-args", "-r", f"__ns:={NS}",
                  "-p", "diagnostics_period_s:=0.2", "-p", f"findings_model:={findings_models[0]}",
                  "-p", f"llm_action:={NS}/llm/generate", "-p", f"dicom_port:={port}", "-p", "allowed_aets:=[SCANNER]",
                  "-p", f"pacs_dicomweb:={orthanc.dicomweb}", "-p", f"fhir_dir:={folder / 'fhir'}",
                  "-p", "max_voxels:=2000000"])
    try:
        with ros_node("t7_client") as client:
            reports: list[CTReport] = []
            client.create_subscription(CTReport, f"{NS}/sdm/report", reports.append, 20)
            watcher = DiagnosticsWatcher(client, f"{NS}/ct_report")
            bring_up(client, f"{NS}/llm_node")
            bring_up(client, f"{NS}/ct_report")
            yield {"client": client, "reports": reports, "watcher": watcher, "port": port, "node": node,
                   "pacs": DicomWebClient(orthanc.dicomweb), "folder": folder}
    finally:
        log = stop(node)
        stop(llm)
        orthanc.stop()
        print(log[-3000:])


def test_storescu_series_to_report_on_the_topic_sr_in_orthanc_and_fhir(hospital):
    study = render(("consolidation", "pleural-effusion"), seed=31)
    series = write_dicom_series(study, hospital["folder"] / "good")[0].parent
    sent = send(series, hospital["port"])
    assert sent.returncode == 0, sent.stderr
    reports = hospital["reports"]
    assert wait_until(lambda: len(reports) >= 1, 60), hospital["node"].output()[-2000:]
    report = reports[-1]
    assert {f.label for f in report.findings if f.present} == {"Consolidation", "Pleural effusion"}
    assert len(report.findings) == 18 and "pleural effusion" in report.findings_text.lower()
    assert "radiologist" in report.disclaimer and "smollm2" in report.report_model.lower()
    findings = [Finding(f.label, f.probability if math.isfinite(f.probability) else None, f.threshold, f.present)
                for f in report.findings]
    assert disagreements(f"{report.findings_text}\n{report.impression}", findings) == []
    study_uid = pydicom.dcmread(next(series.iterdir())).StudyInstanceUID
    assert report.study_key and study_uid not in str(report) and "PHANTOM" not in str(report)
    client = hospital["pacs"]
    assert wait_until(lambda: sr_series(client, study_uid), 20)
    fhir = json.loads((hospital["folder"] / "fhir" / f"{report.study_key}.json").read_text())
    assert fhir["resourceType"] == "DiagnosticReport" and fhir["conclusion"] == report.impression
    assert not list((hospital["folder"] / "fhir").glob("*.partial"))


def _bad_series(folder: Path, case: str) -> Path:
    from pydicom.data import get_testdata_file

    target = folder / case
    if case == "single-slice":
        target.mkdir()
        shutil.copy(get_testdata_file("CT_small.dcm"), target / "CT_small.dcm")
        return target
    write_dicom_series(render(("lung-nodule",), seed=40 + len(case)), target)
    files = sorted(target.iterdir())
    if case == "missing-slices":
        for file in files[10:13]:
            file.unlink()
    elif case == "other-modality":
        for file in files:
            ds = pydicom.dcmread(file)
            ds.Modality = "MR"
            ds.save_as(file)
    return target


@pytest.mark.parametrize("case, reason", [("other-modality", "modality MR, not CT"),
                                          ("single-slice", "1 slice(s)"),
                                          ("missing-slices", "3 slice(s) missing")])
def test_bad_series_fail_alone_and_store_nothing(hospital, case, reason):
    series = _bad_series(hospital["folder"], case)
    before = len(hospital["reports"])
    send(series, hospital["port"])
    status = hospital["watcher"].wait_for(lambda s: reason in s.message, 30)
    assert "received study refused" in status.message
    study_uid = pydicom.dcmread(next(series.iterdir())).StudyInstanceUID
    time.sleep(0.5)
    assert sr_series(hospital["pacs"], study_uid) == [] and len(hospital["reports"]) == before
    assert hospital["node"].poll() is None


def test_unknown_caller_is_refused(hospital):
    series = _bad_series(hospital["folder"], "intruder")
    refused = send(series, hospital["port"], caller="INTRUDER")
    assert refused.returncode != 0 and "Calling AE Title Not Recognized" in refused.stderr


def test_action_reports_stages_and_refuses_corrupt_and_oversized_studies(hospital):
    client = hospital["client"]
    action = ActionClient(client, ReportCT, f"{NS}/sdm/report_ct")
    assert action.wait_for_server(timeout_sec=20)
    nifti = write_nifti(render(("consolidation",), seed=51), hospital["folder"] / "study.nii.gz")
    feedback = []
    handle = result_of(action.send_goal_async(ReportCT.Goal(study_path=str(nifti)),
                                              feedback_callback=lambda f: feedback.append(f.feedback)), 20)
    result = goal_response(handle, 60).result
    assert result.success, result.message
    assert "Consolidation" in {f.label for f in result.report.findings if f.present}  # the model's accuracy: test_sdm
    stages = [f.stage for f in feedback]
    assert stages[0] == "loading" and "findings" in stages and stages[-1] == "storing"
    assert [f.progress for f in feedback] == sorted(f.progress for f in feedback)
    corrupt = hospital["folder"] / "corrupt.nii.gz"
    corrupt.write_bytes(nifti.read_bytes()[:2000])
    big = write_nifti(render((), seed=52, grid=Grid((100, 160, 160))), hospital["folder"] / "big.nii.gz")
    for path, reason in ((corrupt, "cannot be read"), (big, "over the limit"),
                         (hospital["folder"] / "absent", "not found")):
        result = goal_response(result_of(action.send_goal_async(ReportCT.Goal(study_path=str(path))), 20), 60).result
        assert not result.success and reason in result.message, result.message
    key = goal_response(result_of(action.send_goal_async(ReportCT.Goal(study_key="0123456789abcdef")), 20), 60)
    assert not key.result.success and "no received study" in key.result.message
    again = goal_response(result_of(action.send_goal_async(ReportCT.Goal(study_path=str(nifti))), 20), 60).result
    assert again.success  # still serving after the refusals


def test_findings_model_swap_at_run_time_and_clean_logs(hospital, findings_models):
    client = hospital["client"]
    loader = client.create_client(LoadModel, f"{NS}/ct_report/load_model")
    assert loader.wait_for_service(timeout_sec=10)
    broken = hospital["folder"] / "broken.onnx"
    broken.write_bytes(b"not a model")
    refused = result_of(loader.call_async(LoadModel.Request(model_path=str(broken), name="x", version="9")), 30)
    assert not refused.success and "could not load" in refused.message
    assert refused.active and refused.active == refused.previous  # the serving model serves on
    other = f"ct-findings-phantom@{findings_models[2]}"
    swapped = result_of(loader.call_async(LoadModel.Request(model_path=str(findings_models[1]),
                                                            name="ct-findings-phantom", version=findings_models[2])), 60)
    assert swapped.success and swapped.active == other, swapped.message
    action = ActionClient(client, ReportCT, f"{NS}/sdm/report_ct")
    nifti = write_nifti(render(("lymphadenopathy",), seed=61), hospital["folder"] / "swap.nii.gz")
    result = goal_response(result_of(action.send_goal_async(ReportCT.Goal(study_path=str(nifti))), 20), 60).result
    assert result.success and result.report.findings_model == other
    log = hospital["node"].output()
    assert "PHANTOM" not in log and "PH0000" not in log and "1.2.826.0.1.3680043.8.498" not in log


def test_model_manager_deploys_the_profiles_models_from_the_registry(tmp_path):
    """The sdm profile's way: ct_report and llm_node start without their models; the manager pulls the builder's
    best findings model for the hospital edge profile and the learned report writer (an adapter on its base) from
    the signed local registry, verifies them and loads them into the nodes, which then draft with them."""
    from tango2_ros import paths
    from tango2_ros.cli.model_files import profile_model

    writer, _, writer_version = profile_model("sdm", "llm").partition("@")
    ns = "/t7deploy"
    llm = spawn(llm_arguments(ns, *WRITER, "diagnostics_period_s:=0.2"))
    node = spawn(["-m", "tango2_ros.nodes.ct_report", "--ros-args", "-r", f"__ns:={ns}",
                  "-p", "diagnostics_period_s:=0.2", "-p", f"llm_action:={ns}/llm/generate"])
    manager = spawn(["-m", "tango2_ros.nodes.model_manager", "--ros-args", "-r", "__node:=models", "-r", f"__ns:={ns}",
                     "-p", f"store:={paths.default_store()}", "-p", f"cache_dir:={tmp_path / 'cache'}",
                     "-p", f"trusted_keys_dir:={paths.trusted_keys_dir()}", "-p", "slots:=[ct_findings, llm]",
                     "-p", "ct_findings.model:=ct-findings-phantom", "-p", f"ct_findings.node:={ns}/ct_report",
                     "-p", "ct_findings.version:=best-hospital-edge-cpu", "-p", f"llm.model:={writer}",
                     "-p", f"llm.version:={writer_version}", "-p", f"llm.node:={ns}/llm_node"])
    try:
        with ros_node("t7_deploy_client") as client:
            watcher = DiagnosticsWatcher(client, f"{ns}/ct_report")
            writing = DiagnosticsWatcher(client, f"{ns}/llm_node")
            bring_up(client, f"{ns}/llm_node")
            bring_up(client, f"{ns}/ct_report")
            bring_up(client, f"{ns}/models")
            status = watcher.wait_for(lambda s: watcher.values(s).get("model", "").startswith("ct-findings-phantom@"),
                                      120)
            deployed = watcher.values(status)["model"]
            writing.wait_for(lambda s: writing.values(s).get("model", "").startswith(f"{writer}@"), 120)
            action = ActionClient(client, ReportCT, f"{ns}/sdm/report_ct")
            assert action.wait_for_server(timeout_sec=20)
            nifti = write_nifti(render(("pleural-effusion",), seed=71), tmp_path / "study.nii.gz")
            result = goal_response(result_of(action.send_goal_async(ReportCT.Goal(study_path=str(nifti))), 20),
                                   120).result
            assert result.success and result.report.findings_model == deployed
            assert result.report.report_model == f"{writer}@{writer_version}"
            assert "Pleural effusion" in {f.label for f in result.report.findings if f.present}
    finally:
        stop(manager)
        stop(node)
        stop(llm)


def test_a_candidate_writer_in_shadow_is_judged_and_never_used(tmp_path, findings_models):
    """The base model writes the drafts; the learned writer, in an llm_node of its own, is asked after each draft
    is out. Its drafts are judged by the sentence check (never published), and its score on /diagnostics reaches the
    gate: the learned writer's raw drafts pass, so it is promoted after the gate's decisions."""
    from tango2_ros.cli.model_files import profile_model

    candidate = profile_model("sdm", "llm")
    ns = "/t7shadow"
    serving = spawn(llm_arguments(ns, *WRITER))
    shadow = spawn(shadow_llm_arguments(ns, candidate, 1536))
    node = spawn(["-m", "tango2_ros.nodes.ct_report", "--ros-args", "-r", f"__ns:={ns}",
                  "-p", "diagnostics_period_s:=0.2", "-p", f"findings_model:={findings_models[0]}",
                  "-p", f"llm_action:={ns}/llm/generate", "-p", f"shadow_llm_action:={ns}/llm_shadow/generate",
                  "-p", "shadow.decisions:=2"])
    try:
        with ros_node("t7_shadow_client") as client:
            reports: list[CTReport] = []
            client.create_subscription(CTReport, f"{ns}/sdm/report", reports.append, 20)
            watcher = DiagnosticsWatcher(client, f"{ns}/ct_report")
            for fqn in (f"{ns}/llm_node", f"{ns}/llm_shadow", f"{ns}/ct_report"):
                bring_up(client, fqn)
            action = ActionClient(client, ReportCT, f"{ns}/sdm/report_ct")
            assert action.wait_for_server(timeout_sec=20)
            def scored(status) -> dict:
                return json.loads(watcher.values(status).get("shadow") or "{}")

            for asked, (seed, findings) in enumerate(((81, ("pleural-effusion", "cardiomegaly")),
                                                      (82, ("lung-nodule",))), 1):
                nifti = write_nifti(render(findings, seed=seed), tmp_path / f"study{seed}.nii.gz")
                result = goal_response(result_of(action.send_goal_async(ReportCT.Goal(study_path=str(nifti))), 20),
                                       120).result
                assert result.success and "smollm2" in result.report.report_model.lower()  # the serving writer's draft
                # judged after the draft is out, before the next study comes (which would preempt it)
                watcher.wait_for(lambda s, n=asked: scored(s).get("asked", 0) >= n, 120)
            score = scored(watcher.wait_for(lambda s: scored(s).get("decisions") == 2, 60))
            assert score["model"] == candidate and score["would_violate"] == 0, score
            assert score["promoted"] and score["agreement_pct"] == 100.0, score
            assert len(reports) == 2 and all("smollm2" in r.report_model.lower() for r in reports)  # nothing from the shadow
    finally:
        stop(node)
        stop(shadow)
        stop(serving)


def test_sr_waits_in_the_outbox_while_the_pacs_is_down(tmp_path, findings_models):
    """Nothing is lost: with the PACS down the report still goes out and its SR waits as a file; once the PACS
    answers again, the next study's store sends the waiting SR too."""
    ns = "/t7outbox"
    orthanc = OrthancServer(tmp_path / "orthanc")  # its ports are chosen; it is started later
    node = spawn(["-m", "tango2_ros.nodes.ct_report", "--ros-args", "-r", f"__ns:={ns}",
                  "-p", "diagnostics_period_s:=0.2", "-p", "llm_action:=''",
                  "-p", f"findings_model:={findings_models[0]}", "-p", f"pacs_dicomweb:={orthanc.dicomweb}",
                  "-p", f"sr_outbox:={tmp_path / 'outbox'}"])
    try:
        with ros_node("t7_outbox_client") as client:
            watcher = DiagnosticsWatcher(client, f"{ns}/ct_report")
            bring_up(client, f"{ns}/ct_report")
            action = ActionClient(client, ReportCT, f"{ns}/sdm/report_ct")
            assert action.wait_for_server(timeout_sec=20)
            first = write_dicom_series(render(("emphysema",), seed=81), tmp_path / "first")[0].parent
            result = goal_response(result_of(action.send_goal_async(ReportCT.Goal(study_path=str(first))), 20),
                                   60).result
            assert result.success  # the draft is out even though the PACS is not
            assert watcher.wait_for(lambda s: "not stored" in s.message and "outbox" in s.message, 20)
            assert len(list((tmp_path / "outbox").glob("*.dcm"))) == 1
            orthanc.start()
            second = write_dicom_series(render(("pleural-effusion",), seed=82), tmp_path / "second")[0].parent
            result = goal_response(result_of(action.send_goal_async(ReportCT.Goal(study_path=str(second))), 20),
                                   60).result
            assert result.success
            assert not list((tmp_path / "outbox").glob("*.dcm"))
            pacs = DicomWebClient(orthanc.dicomweb)
            for series in (first, second):
                assert sr_series(pacs, pydicom.dcmread(next(series.iterdir())).StudyInstanceUID)
    finally:
        stop(node)
        orthanc.stop()


def test_the_vision_language_model_writes_from_the_volume_in_the_node(tmp_path, findings_models):
    """`writer:=vlm`: the text comes from the VLM reading the volume, checked against the findings model, and the
    report names it as the text's model. A bundle missing its projector fails the configure transition with the
    reason, and the node configures once it is given a whole one."""
    from helpers.lifecycle import change_state, set_parameter
    from lifecycle_msgs.msg import Transition

    from tango2_ros.cli.model_files import model_file, model_folder
    from tango2_ros.cli.sdm import DEFAULT_VLM
    from tango2_ros.sdm.vlm import PROJECTOR_FILE, read_conventions

    bundle = model_folder(DEFAULT_VLM)[0]
    broken = tmp_path / "broken"
    shutil.copytree(bundle, broken)
    (broken / PROJECTOR_FILE).unlink()
    base = model_file(read_conventions(bundle).base_model)[0]
    ns = f"{NS}vlm"
    node = spawn(["-m", "tango2_ros.nodes.ct_report", "--ros-args", "-r", f"__ns:={ns}", "-p",
                  "diagnostics_period_s:=0.2", "-p", f"findings_model:={findings_models[0]}", "-p", "writer:=vlm",
                  "-p", f"vlm_bundle:={broken}", "-p", f"vlm_base:={base}", "-p", "vlm_threads:=1",
                  "-p", f"fhir_dir:={tmp_path / 'fhir'}"])
    try:
        with ros_node("t7_vlm_client") as client:
            watcher = DiagnosticsWatcher(client, f"{ns}/ct_report")
            assert not change_state(client, f"{ns}/ct_report", Transition.TRANSITION_CONFIGURE)
            watcher.wait_for(lambda status: "has no projector" in status.message, 20)
            assert set_parameter(client, f"{ns}/ct_report", "vlm_bundle", str(bundle))
            bring_up(client, f"{ns}/ct_report")
            action = ActionClient(client, ReportCT, f"{ns}/sdm/report_ct")
            assert action.wait_for_server(timeout_sec=20)
            nifti = write_nifti(render(("emphysema", "pleural-effusion"), seed=61), tmp_path / "study.nii.gz")
            result = goal_response(result_of(action.send_goal_async(ReportCT.Goal(study_path=str(nifti))), 20),
                                   120).result
            assert result.success, result.message
            report = result.report
            assert report.report_model.startswith("ct-report-vlm@"), report.report_model
            findings = [Finding(f.label, f.probability, 0.5, f.present) for f in report.findings]
            assert disagreements(f"{report.findings_text}\n{report.impression}", findings) == []
            fhir = json.loads(next((tmp_path / "fhir").glob("*.json")).read_text())
            text = base64.b64decode(fhir["presentedForm"][0]["data"]).decode()
            assert f"text {report.report_model})" in text  # the FHIR report names the model that wrote it
    finally:
        print(stop(node)[-3000:])


def test_the_model_manager_deploys_and_hot_swaps_the_vision_language_model(tmp_path, findings_models):
    """The VLM bundle is an artifact like any other: signed with its base model named in the manifest, pulled with
    that base, loaded into `ct_report/vlm` and swapped at run time; a bundle without its projector is refused at
    load and the serving version goes on. Before any is deployed a study fails with the reason."""
    from helpers.registry import make_keys, manager_arguments, publish
    from tango2_msgs.srv import SwapModel
    from tango2_ros.cli.model_files import model_folder
    from tango2_ros.cli.sdm import DEFAULT_VLM
    from tango2_ros.core.runtime.default_models import default_llm_path
    from tango2_ros.sdm.vlm import ADAPTER_FILE, ENCODER_FILE, PROJECTOR_FILE, read_conventions

    bundle = model_folder(DEFAULT_VLM)[0]
    base = read_conventions(bundle).base_model
    make_keys(tmp_path, "fleet")
    publish(tmp_path, *base.split("@"), default_llm_path())
    whole = [bundle / ADAPTER_FILE, bundle / ENCODER_FILE, bundle / PROJECTOR_FILE]
    for version, files in (("1.0.0", whole), ("1.1.0", whole), ("1.2.0", whole[:2])):
        publish(tmp_path, "ct-report-vlm", version, files, task="vlm", format="onnx", quantization="f32",
                base_model=base)
    ns = f"{NS}vlmswap"
    node = spawn(["-m", "tango2_ros.nodes.ct_report", "--ros-args", "-r", f"__ns:={ns}", "-p",
                  "diagnostics_period_s:=0.2", "-p", f"findings_model:={findings_models[0]}", "-p", "writer:=vlm",
                  "-p", "vlm_threads:=1", "-p", "vlm.health_budget_s:=120.0"])
    manager = None
    try:
        with ros_node("t7_vlm_swap") as client:
            bring_up(client, f"{ns}/ct_report")
            action = ActionClient(client, ReportCT, f"{ns}/sdm/report_ct")
            assert action.wait_for_server(timeout_sec=20)
            nifti = write_nifti(render(("emphysema",), seed=62), tmp_path / "study.nii.gz")

            def report():
                goal = result_of(action.send_goal_async(ReportCT.Goal(study_path=str(nifti))), 20)
                return goal_response(goal, 120).result

            waiting = report()
            assert not waiting.success and "no VLM (~/vlm/load_model) is loaded yet" in waiting.message
            manager = spawn(manager_arguments(tmp_path, ns, "ct-report-vlm", **{
                "llm.node": f"{ns}/ct_report/vlm", "llm.version": "1.0.0", "llm.health_budget_s": 120.0}))
            bring_up(client, f"{ns}/models")
            vlm = DiagnosticsWatcher(client, f"{ns}/ct_report/vlm")
            vlm.wait_for(lambda s: s.message.startswith("serving ct-report-vlm@1.0.0"), 120)
            assert report().report.report_model == "ct-report-vlm@1.0.0"

            swap = client.create_client(SwapModel, f"{ns}/models/swap")
            assert swap.wait_for_service(timeout_sec=10)
            for version, works in (("1.1.0", True), ("1.2.0", False)):
                answer = result_of(swap.call_async(SwapModel.Request(name="ct-report-vlm", version=version)), 180)
                assert answer.success is works and answer.active_version == "1.1.0", answer.message
            assert "has no projector" in answer.message  # the refusal says why; 1.1.0 serves on
            assert report().report.report_model == "ct-report-vlm@1.1.0"
    finally:
        outputs = stop(node) + (stop(manager) if manager else "")
    assert "Traceback" not in outputs, outputs[-4000:]

