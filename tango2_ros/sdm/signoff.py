"""The radiologist's sign-off: the AI drafts waiting in the PACS, and the verified report that replaces one.

The worklist is what the PACS holds (QIDO-RS: SR series described as AI drafts), so it survives restarts and
shows drafts from any ct_report. Signing builds the verified SR from the draft itself: the radiologist's FINDINGS
and IMPRESSION, completion COMPLETE, verification VERIFIED, the signer as verifying observer, the draft named as
its predecessor document (the standard way an SR supersedes another); it is stored over STOW-RS and, where the
PACS's REST API is given (Orthanc), the draft is deleted. The FHIR DiagnosticReport of the study becomes `final`,
and the (draft, signed) pair is appended to the corrections log: the report writer's next training data, with the
de-identified study key only.
"""
from __future__ import annotations

import base64
import copy
import datetime
import json
import os
from dataclasses import dataclass
from pathlib import Path

import requests

from tango2_ros.sdm.outputs import DRAFT_SERIES_DESCRIPTION, LOINC_FINDINGS, LOINC_IMPRESSION
from tango2_ros.sdm.pacs import DicomWebClient, PacsError
from tango2_ros.sdm.volume import study_key_of

SIGNED_SERIES_DESCRIPTION = "Chest CT report (verified)"
FINDING_CODE, COMMENT_CODE = "121071", "121106"
STUDY_UID, SERIES_UID, SOP_UID = "0020000D", "0020000E", "00080018"
SERIES_DESCRIPTION, INSTANCE_NUMBER = "0008103E", "00200013"
KEY_SLICE_FRACTIONS = (0.3, 0.5, 0.7)
LUNG_WINDOW = (-600.0, 1500.0)  # level, width in HU


class NotADraft(Exception):
    """The SR is already verified: a signed report is not signed again."""


def _value(entry: dict, tag: str) -> str:
    values = entry.get(tag, {}).get("Value") or [""]
    return str(values[0])


@dataclass(frozen=True)
class SignOffSettings:
    dicomweb: str  # DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web
    orthanc_rest: str = ""  # Orthanc's REST root: drafts are deleted once signed; empty = they stay, superseded
    fhir_dir: str = ""  # where ct_report writes <study key>.json
    study_salt: str = "tango2"
    corrections_log: str = ""  # JSON lines of (draft, signed) pairs; empty = not logged


class SignOff:
    def __init__(self, settings: SignOffSettings, timeout_s: float = 30.0) -> None:
        self.settings = settings
        self.client = DicomWebClient(settings.dicomweb, timeout_s)
        self.timeout_s = timeout_s

    # -- reading ---------------------------------------------------------------------------------------------
    def worklist(self) -> list[dict]:
        """Every AI draft SR in the PACS: study, series and SR UIDs and the de-identified study key."""
        drafts = []
        for series in self.client.search("series", Modality="SR", includefield=SERIES_DESCRIPTION):
            if _value(series, SERIES_DESCRIPTION) != DRAFT_SERIES_DESCRIPTION:
                continue
            study, series_uid = _value(series, STUDY_UID), _value(series, SERIES_UID)
            for instance in self.client.search(f"studies/{study}/series/{series_uid}/instances"):
                drafts.append({"study": study, "series": series_uid, "sr": _value(instance, SOP_UID),
                               "study_key": study_key_of(study, self.settings.study_salt)})
        return drafts

    def draft(self, study_uid: str, sr_uid: str):
        """The SR dataset (LookupError when the PACS has no such SR in that study)."""
        found = self.client.search(f"studies/{study_uid}/instances", SOPInstanceUID=sr_uid)
        if not found:
            raise LookupError(f"no SR {sr_uid} in study {study_uid}")
        return self.client.retrieve_instance(study_uid, _value(found[0], SERIES_UID), sr_uid)

    def study(self, study_uid: str, sr_uid: str) -> dict:
        """What the radiologist reads: the draft's texts and findings, and the key slices of the CT series."""
        sr = self.draft(study_uid, sr_uid)
        texts = report_texts(sr)
        return {"study": study_uid, "sr": sr_uid, "study_key": study_key_of(study_uid, self.settings.study_salt),
                "completion": str(sr.get("CompletionFlag", "")), "verification": str(sr.get("VerificationFlag", "")),
                **texts, "slices": self.key_slices(study_uid)}

    def key_slices(self, study_uid: str) -> list[dict]:
        ct = self.client.search(f"studies/{study_uid}/series", Modality="CT")
        if not ct:
            return []
        series_uid = _value(ct[0], SERIES_UID)
        instances = self.client.search(f"studies/{study_uid}/series/{series_uid}/instances",
                                       includefield=INSTANCE_NUMBER)
        instances.sort(key=lambda entry: int(_value(entry, INSTANCE_NUMBER) or 0))
        picked = sorted({int(fraction * (len(instances) - 1)) for fraction in KEY_SLICE_FRACTIONS})
        return [{"series": series_uid, "instance": _value(instances[i], SOP_UID), "position": i + 1,
                 "of": len(instances)} for i in picked]

    def slice_png(self, study_uid: str, series_uid: str, instance_uid: str) -> bytes:
        """One CT slice in the lung window as PNG."""
        import cv2
        import numpy

        dataset = self.client.retrieve_instance(study_uid, series_uid, instance_uid)
        if "PixelData" not in dataset:
            raise LookupError(f"instance {instance_uid} has no image")
        hu = dataset.pixel_array.astype(numpy.float32) * float(getattr(dataset, "RescaleSlope", 1.0)) + \
            float(getattr(dataset, "RescaleIntercept", 0.0))
        level, width = LUNG_WINDOW
        grey = numpy.clip((hu - (level - width / 2)) / width * 255.0, 0, 255).astype(numpy.uint8)
        ok, png = cv2.imencode(".png", grey)
        if not ok:
            raise ValueError("the slice could not be encoded")
        return png.tobytes()

    # -- signing ---------------------------------------------------------------------------------------------
    def sign(self, study_uid: str, sr_uid: str, findings_text: str, impression: str, signer: str,
             now: datetime.datetime | None = None) -> dict:
        """Store the verified report, then retire the draft, finalise the FHIR report and log the pair."""
        draft = self.draft(study_uid, sr_uid)
        if str(draft.get("VerificationFlag", "")) == "VERIFIED":
            raise NotADraft(f"SR {sr_uid} is already verified")
        now = now or datetime.datetime.now(datetime.timezone.utc)
        signed = signed_report(draft, findings_text, impression, signer, now)
        self.client.store([signed])  # from here on the report is signed: the rest follows it, the draft goes last
        key = study_key_of(study_uid, self.settings.study_salt)
        fhir = self._finalise_fhir(key, findings_text, impression, signer, now)
        self._log_pair(key, report_texts(draft), findings_text, impression, signer, now)
        replaced = self._delete_draft(sr_uid)
        return {"study_key": key, "signed_sr": str(signed.SOPInstanceUID), "draft_deleted": replaced, "fhir": fhir}

    def _delete_draft(self, sr_uid: str) -> bool:
        root = self.settings.orthanc_rest.rstrip("/")
        if not root:
            return False
        try:
            found = requests.post(f"{root}/tools/lookup", data=sr_uid, timeout=self.timeout_s).json()
            for entry in found:
                if entry.get("Type") == "Instance":
                    requests.delete(f"{root}/instances/{entry['ID']}", timeout=self.timeout_s).raise_for_status()
                    return True
        except (requests.RequestException, ValueError) as exc:
            raise PacsError(f"the verified report is stored, but the draft was not deleted: {exc}") from None
        return False

    def _finalise_fhir(self, key: str, findings_text: str, impression: str, signer: str,
                       now: datetime.datetime) -> str:
        if not self.settings.fhir_dir:
            return "none"
        path = Path(self.settings.fhir_dir) / f"{key}.json"
        if not path.exists():
            return "missing"
        from fhir.resources.R4B.diagnosticreport import DiagnosticReport

        resource = json.loads(path.read_text())
        text = f"FINDINGS:\n{findings_text}\n\nIMPRESSION:\n{impression}\n\nSigned by {signer}."
        resource.update(status="final", conclusion=impression, issued=now.isoformat(),
                        resultsInterpreter=[{"display": signer}],
                        presentedForm=[{"contentType": "text/plain; charset=utf-8", "language": "en",
                                        "data": base64.b64encode(text.encode()).decode(),
                                        "title": "Chest CT report"}])
        checked = DiagnosticReport.model_validate(resource).model_dump(mode="json", exclude_none=True)
        partial = path.with_suffix(".json.partial")
        partial.write_text(json.dumps(checked, indent=1))
        os.replace(partial, path)
        return "final"

    def _log_pair(self, key: str, draft: dict, findings_text: str, impression: str, signer: str,
                  now: datetime.datetime) -> None:
        if not self.settings.corrections_log:
            return
        signed = {"findings_text": findings_text, "impression": impression}
        before = {"findings_text": draft["findings_text"], "impression": draft["impression"]}
        entry = {"time": now.isoformat(), "study_key": key, "signer": signer, "findings": draft["findings"],
                 "draft": before, "signed": signed, "edited": before != signed}
        path = Path(self.settings.corrections_log)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as out:
            out.write(json.dumps(entry, ensure_ascii=False) + "\n")


def _code(item) -> str:
    names = item.get("ConceptNameCodeSequence")
    return str(names[0].CodeValue) if names else ""


def report_texts(sr) -> dict:
    """FINDINGS, IMPRESSION, the assessed findings and the comment of a report SR."""
    texts = {"findings_text": "", "impression": "", "findings": [], "comment": ""}
    for item in sr.get("ContentSequence", []):
        code, value = _code(item), str(item.get("TextValue", ""))
        if code == LOINC_FINDINGS:
            texts["findings_text"] = value
        elif code == LOINC_IMPRESSION:
            texts["impression"] = value
        elif code == COMMENT_CODE:
            texts["comment"] = value
        elif code == FINDING_CODE:
            texts["findings"].append(_finding(value))
    return texts


def _finding(value: str) -> dict:
    """'Lung nodule: present (probability 0.91, threshold 0.50)' -> its parts."""
    label, _, rest = value.partition(": ")
    state, _, numbers = rest.partition(" (")
    probability = numbers.removeprefix("probability ").split(",")[0]
    try:
        probability_value = float(probability)
    except ValueError:
        probability_value = None
    return {"label": label, "present": state == "present", "probability": probability_value}


def signed_report(draft, findings_text: str, impression: str, signer: str, now: datetime.datetime):
    """The verified SR made from the draft: new texts, new series and instance, the signer, the predecessor."""
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    signed = copy.deepcopy(draft)
    for item in signed.ContentSequence:
        code = _code(item)
        if code == LOINC_FINDINGS:
            item.TextValue = findings_text
        elif code == LOINC_IMPRESSION:
            item.TextValue = impression
        elif code == COMMENT_CODE:
            item.TextValue = f"Drafted by AI, confirmed by {signer}. {item.TextValue}"[:1024]
    stamp_date, stamp_time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    observer = Dataset()
    observer.VerifyingObserverName = signer
    observer.VerifyingOrganization = "TANGO2-ROS console"
    observer.VerificationDateTime = stamp_date + stamp_time
    observer.VerifyingObserverIdentificationCodeSequence = []
    predecessor = _reference(draft)
    signed.CompletionFlag, signed.VerificationFlag = "COMPLETE", "VERIFIED"
    signed.VerifyingObserverSequence = [observer]
    signed.PredecessorDocumentsSequence = [predecessor]
    signed.SeriesInstanceUID, signed.SOPInstanceUID = generate_uid(), generate_uid()
    signed.file_meta.MediaStorageSOPInstanceUID = signed.SOPInstanceUID
    signed.SeriesDescription, signed.SeriesNumber = SIGNED_SERIES_DESCRIPTION, int(draft.SeriesNumber) + 1
    signed.ContentDate, signed.ContentTime = stamp_date, stamp_time
    signed.InstanceCreationDate, signed.InstanceCreationTime = stamp_date, stamp_time
    return signed


def _reference(draft):
    """The hierarchical reference (study > series > SOP) to `draft`, for PredecessorDocumentsSequence."""
    from pydicom.dataset import Dataset

    sop, series, study = Dataset(), Dataset(), Dataset()
    sop.ReferencedSOPClassUID, sop.ReferencedSOPInstanceUID = draft.SOPClassUID, draft.SOPInstanceUID
    series.SeriesInstanceUID, series.ReferencedSOPSequence = draft.SeriesInstanceUID, [sop]
    study.StudyInstanceUID, study.ReferencedSeriesSequence = draft.StudyInstanceUID, [series]
    return study
