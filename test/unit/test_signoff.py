"""The radiologist's sign-off against a real Orthanc: the worklist of AI drafts, the key slices, and the verified
SR that replaces a draft, with the FHIR report made final and the (draft, signed) pair logged."""
import base64
import json

import cv2
import numpy
import pytest

from helpers.sdm import draft_in_pacs
from tango2_ros.sdm.pacs import OrthancServer
from tango2_ros.sdm.signoff import NotADraft, SignOff, SignOffSettings
from tango2_ros.sdm.volume import load_study


@pytest.fixture()
def orthanc(tmp_path):
    server = OrthancServer(tmp_path / "orthanc").start()
    yield server
    server.stop()


def test_a_signed_report_replaces_the_draft_in_the_pacs_and_fhir(orthanc, series, tmp_path):
    fhir, log = tmp_path / "fhir", tmp_path / "corrections.jsonl"
    study_uid = draft_in_pacs(orthanc.dicomweb, series, fhir)
    desk = SignOff(SignOffSettings(orthanc.dicomweb, orthanc.url, str(fhir), "tango2", str(log)))
    [draft] = desk.worklist()
    key = load_study(series).study_key("tango2")
    assert draft["study"] == study_uid and draft["study_key"] == key
    study = desk.study(study_uid, draft["sr"])
    assert study["verification"] == "UNVERIFIED" and "nodule" in study["findings_text"].lower()
    assert [f["label"] for f in study["findings"] if f["present"]] == ["Lung nodule"]
    assert len(study["slices"]) == 3 and all(0.0 <= f["probability"] <= 1.0 for f in study["findings"])
    middle = study["slices"][1]
    png = desk.slice_png(study_uid, middle["series"], middle["instance"])
    picture = cv2.imdecode(numpy.frombuffer(png, numpy.uint8), cv2.IMREAD_UNCHANGED)
    assert picture.ndim == 2 and picture.std() > 10  # an image of a chest, not a blank

    findings = "A 9 mm solid nodule in the right upper lobe. No pleural effusion."
    answer = desk.sign(study_uid, draft["sr"], findings, "Solitary right upper lobe nodule.", "Dr. Kim")
    assert answer["draft_deleted"] and answer["fhir"] == "final" and answer["study_key"] == key
    assert desk.worklist() == []  # the draft is gone; the verified report is not a draft
    signed = desk.draft(study_uid, answer["signed_sr"])
    assert (signed.CompletionFlag, signed.VerificationFlag) == ("COMPLETE", "VERIFIED")
    assert str(signed.VerifyingObserverSequence[0].VerifyingObserverName) == "Dr. Kim"
    predecessor = signed.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert predecessor.ReferencedSOPInstanceUID == draft["sr"]
    assert desk.study(study_uid, answer["signed_sr"])["findings_text"] == findings
    report = json.loads((fhir / f"{key}.json").read_text())
    assert report["status"] == "final" and report["conclusion"] == "Solitary right upper lobe nodule."
    assert "Dr. Kim" in base64.b64decode(report["presentedForm"][0]["data"]).decode()
    [pair] = [json.loads(line) for line in log.read_text().splitlines()]
    assert pair["edited"] and pair["signed"]["findings_text"] == findings and pair["study_key"] == key
    assert study_uid not in log.read_text()  # the training data carries the de-identified key only

    with pytest.raises(LookupError):  # the draft was deleted: it cannot be signed twice
        desk.sign(study_uid, draft["sr"], findings, "x", "Dr. Kim")
    with pytest.raises(NotADraft):  # and the verified report is not signed again
        desk.sign(study_uid, answer["signed_sr"], findings, "x", "Dr. Lee")
    with pytest.raises(LookupError):
        desk.study("1.2.3.4", draft["sr"])


def test_without_the_pacs_rest_api_the_draft_stays_superseded_and_nothing_else_is_written(orthanc, series,
                                                                                         tmp_path):
    study_uid = draft_in_pacs(orthanc.dicomweb, series)
    desk = SignOff(SignOffSettings(orthanc.dicomweb))
    [draft] = desk.worklist()
    answer = desk.sign(study_uid, draft["sr"], "No acute findings.", "Normal chest CT.", "Dr. Kim")
    assert (answer["draft_deleted"], answer["fhir"]) == (False, "none")
    assert [d["sr"] for d in desk.worklist()] == [draft["sr"]]
