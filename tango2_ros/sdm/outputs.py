"""The report draft as a DICOM Comprehensive SR (highdicom) for the PACS and as a FHIR DiagnosticReport.

The SR is a new series in the source study: a "Diagnostic imaging report" container (LOINC 18748-4) with the
FINDINGS (LOINC 59776-5) and IMPRESSION (LOINC 19005-8) texts, one "Finding" text item per assessed CT-RATE
label with its probability, the AI-draft comment, and the source images as evidence. It is marked neither
complete nor verified: a radiologist finishes it. FHIR uses `fhir.resources`' R4B models (the DiagnosticReport
fields used here are the same in R4): status "preliminary", the radiology category, LOINC 24627-2 (CT chest),
the conclusion and the findings as an extension-free `presentedForm` text.
"""
from __future__ import annotations

import base64
import datetime
import json
import os
from dataclasses import dataclass
from pathlib import Path

from tango2_ros.core.runtime.serving import ERROR, OK, WARN, ServingStatus
from tango2_ros.core.settings import setting
from tango2_ros.sdm.pipeline import StudyReport
from tango2_ros.sdm.volume import CtVolume

MANUFACTURER = "TANGO2-ROS"
DRAFT_SERIES_DESCRIPTION = "AI draft report (unverified)"
LOINC_FINDINGS, LOINC_IMPRESSION = "59776-5", "19005-8"


def structured_report(report: StudyReport, volume: CtVolume, series_number: int = 9001):
    """A highdicom ComprehensiveSR referencing `volume`'s images; needs the DICOM headers of the series."""
    import highdicom as hd
    from pydicom.sr.coding import Code
    from pydicom.uid import generate_uid

    if not volume.datasets:
        raise ValueError("a structured report needs the DICOM headers of the source series")
    loinc = "LN"
    items = [
        hd.sr.TextContentItem(Code(LOINC_FINDINGS, loinc, "Procedure Findings"), report.draft.findings_text,
                              relationship_type="CONTAINS"),
        hd.sr.TextContentItem(Code(LOINC_IMPRESSION, loinc, "Radiology Impression"), report.draft.impression,
                              relationship_type="CONTAINS"),
    ]
    for finding in report.findings:
        if finding.assessed:
            state = "present" if finding.present else "absent"
            items.append(hd.sr.TextContentItem(
                Code("121071", "DCM", "Finding"),
                f"{finding.label}: {state} (probability {finding.probability:.2f}, threshold {finding.threshold:.2f})",
                relationship_type="CONTAINS"))
    items.append(hd.sr.TextContentItem(Code("121106", "DCM", "Comment"),
                                       f"{report.disclaimer} Findings model {report.findings_model}; text "
                                       f"{report.draft.model}.", relationship_type="CONTAINS"))
    root = hd.sr.ContainerContentItem(Code("18748-4", loinc, "Diagnostic imaging report"))
    root.ContentSequence = hd.sr.ContentSequence(items)
    return hd.sr.ComprehensiveSR(
        evidence=volume.datasets, content=root, series_instance_uid=generate_uid(), series_number=series_number,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer=MANUFACTURER, is_complete=False,
        is_final=False, is_verified=False, series_description=DRAFT_SERIES_DESCRIPTION)


def diagnostic_report(report: StudyReport, issued: datetime.datetime | None = None) -> dict:
    """A FHIR DiagnosticReport (validated by fhir.resources) as a JSON-ready dict; the subject is the study key."""
    from fhir.resources.R4B.diagnosticreport import DiagnosticReport

    issued = issued or datetime.datetime.now(datetime.timezone.utc)
    text = f"FINDINGS:\n{report.draft.findings_text}\n\nIMPRESSION:\n{report.draft.impression}\n\n{report.disclaimer}" \
        f"\n(findings model {report.findings_model}; text {report.draft.model})"  # who wrote what
    resource = DiagnosticReport(
        status="preliminary",
        category=[{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD",
                               "display": "Radiology"}]}],
        code={"coding": [{"system": "http://loinc.org", "code": "24627-2", "display": "CT Chest"}]},
        identifier=[{"system": "urn:tango2:study-key", "value": report.study_key}],
        issued=issued.isoformat(),
        conclusion=report.draft.impression,
        presentedForm=[{"contentType": "text/plain; charset=utf-8", "language": "en",
                        "data": base64.b64encode(text.encode()).decode(), "title": "AI draft chest CT report"}],
    )
    return resource.model_dump(mode="json", exclude_none=True)


def write_fhir(report: StudyReport, folder: Path) -> Path:
    """The DiagnosticReport as `<study key>.json`, written to a temporary name and renamed: readers never see half."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{report.study_key}.json"
    partial = target.with_suffix(".json.partial")
    partial.write_text(json.dumps(diagnostic_report(report), indent=1))
    os.replace(partial, target)
    return target


@dataclass(frozen=True)
class Destinations:
    """Where finished drafts go (the ct_report node's parameters)."""
    pacs_dicomweb: str = setting("", "DICOMweb root of the PACS the SR is stored to; empty = not stored.")
    sr_outbox: str = setting("", "Folder where SRs the PACS could not take wait to be sent again; empty = they are "
                             "only reported.")
    fhir_dir: str = setting("", "Folder for FHIR DiagnosticReport JSON files; empty = none.")


class ReportDelivery:
    """A finished draft to the PACS as an SR over STOW-RS, through the outbox (an SR the PACS cannot take waits
    there and is sent again after the next successful store), and as a FHIR DiagnosticReport file."""

    def __init__(self, to: Destinations = Destinations()) -> None:
        self._outbox = None
        if to.pacs_dicomweb:
            from tango2_ros.sdm.pacs import DicomWebClient, SrOutbox

            self._outbox = SrOutbox(DicomWebClient(to.pacs_dicomweb), Path(to.sr_outbox) if to.sr_outbox else None)
        self._fhir_dir = Path(to.fhir_dir) if to.fhir_dir else None

    @property
    def counts(self) -> dict[str, int]:
        """SRs stored in the PACS and SRs waiting in the outbox."""
        if self._outbox is None:
            return {"stored": 0, "sr_waiting": 0}
        return {"stored": self._outbox.stored, "sr_waiting": self._outbox.waiting}

    def deliver(self, report: StudyReport) -> str:
        """Send the draft everywhere configured; returns why the PACS did not take it ('' when it did or is not
        configured). The SR is built completely before anything is sent."""
        problem = ""
        if self._outbox is not None and report.volume.datasets:
            from tango2_ros.sdm.pacs import PacsError

            sr = structured_report(report, report.volume)
            try:
                self._outbox.store(sr, report.study_key)
            except PacsError as exc:
                problem = f"SR for study {report.study_key} not stored: {exc}" + \
                    (" (kept in the outbox)" if self._outbox.folder else "")
        if self._fhir_dir is not None:
            write_fhir(report, self._fhir_dir)
        return problem


class ReportDesk:
    """What a report service says of its studies: the counts, and the status each finished or failed study
    leaves. A PACS problem stays the status while SRs wait in the outbox, even when later studies succeed."""

    def __init__(self, to: Destinations = Destinations()) -> None:
        self.delivery = ReportDelivery(to)
        self.studies = self.failed = 0
        self.status = ServingStatus(WARN, "configured, not receiving", self.counts)

    def deliver_to(self, to: Destinations) -> None:
        """New destinations (a node configured again); the counts go on."""
        self.delivery = ReportDelivery(to)

    @property
    def counts(self) -> dict[str, int]:
        """Studies reported and failed, SRs stored and waiting (the outbox is counted on disk)."""
        return {"studies": self.studies, "failed": self.failed, **self.delivery.counts}

    def finished(self, report: StudyReport) -> ServingStatus:
        """Deliver a finished draft; the status it leaves."""
        problem = self.delivery.deliver(report)
        self.studies += 1
        counts = self.counts
        if problem:
            self.status = ServingStatus(ERROR, problem, counts)
        elif self.status.level == ERROR and counts["sr_waiting"]:
            self.status = ServingStatus(ERROR, self.status.message, counts)
        else:
            self.status = ServingStatus(WARN if report.draft.corrections else OK, report.summary(), counts)
        return self.status

    def failed_study(self, message: str) -> ServingStatus:
        self.failed += 1
        self.status = ServingStatus(ERROR, message, self.counts)
        return self.status
