"""SDM units: the phantom, DICOM/NIfTI ingestion and its refusals, preprocessing, the report text and its
agreement check, the SR and FHIR outputs (the PACS, the CLI, the builder and the trained model's accuracy are in
integration/test_sdm_pipeline.py)."""
import json
import shutil
from pathlib import Path

import numpy
import pydicom
import pytest

from helpers.sdm import copy_series, findings_with
from tango2_ros.sdm.labels import label_of
from tango2_ros.sdm.phantom import INSERTABLE, render
from tango2_ros.sdm.report import checked_draft, disagreements, template_draft
from tango2_ros.sdm.study_files import write_nifti
from tango2_ros.errors import UserError
from tango2_ros.sdm.pipeline import StudyReport
from tango2_ros.sdm.volume import CtVolume, Preprocessing, StudyError, StudyLimits, load_study, preprocess



def test_phantom_draws_each_finding_where_it_belongs():
    normal = render((), seed=1)
    assert normal.findings == () and set(normal.truth().values()) == {0}
    hu = normal.hu.astype(float)
    assert (hu < -800).mean() > 0.3  # air and lungs
    for slug in INSERTABLE:
        study = render((slug,), seed=1)
        assert study.findings == (label_of(slug).name,) and study.truth()[label_of(slug).name] == 1
        assert not numpy.array_equal(study.hu, normal.hu), slug
    emphysema = render(("emphysema",), seed=1).hu
    assert (emphysema < -960).sum() > (normal.hu < -960).sum() + 500  # low-attenuation areas
    calcified = render(("arterial-wall-calcification",), seed=1).hu
    assert ((calcified > 900) & (calcified < 1500)).sum() > 50
    assert not ((normal.hu > 900) & (normal.hu < 1500)).any()


def test_phantom_refuses_unknown_and_undrawable_findings():
    with pytest.raises(ValueError, match="unknown finding 'lung-tumour'"):
        render(("lung-tumour",))
    with pytest.raises(ValueError, match="cannot draw 'hiatal-hernia'"):
        render(("hiatal-hernia",))


def test_dicom_series_and_nifti_read_back_exactly(series, tmp_path):
    study = render(("lung-nodule", "pleural-effusion"), seed=3)
    volume = load_study(series)
    assert volume.hu.shape == study.grid.shape and volume.spacing == study.grid.spacing
    assert numpy.array_equal(volume.hu, study.hu.astype(numpy.float32))  # rescale intercept -1024 applied
    nifti = load_study(write_nifti(study, tmp_path / "ct.nii.gz"))
    assert numpy.array_equal(nifti.hu, volume.hu) and nifti.spacing == volume.spacing
    # slices in any file order, and a reversed series, come out inferior to superior
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    for index, file in enumerate(sorted(series.iterdir())[::-1]):
        shutil.copy(file, shuffled / f"x{(index * 37) % 101:03d}.dcm")
    assert numpy.array_equal(load_study(shuffled).hu, volume.hu)
    mha = tmp_path / "ct.mha"
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(study.hu)
    image.SetSpacing(tuple(reversed(study.grid.spacing)))
    sitk.WriteImage(image, str(mha))
    assert numpy.array_equal(load_study(mha).hu, volume.hu)


def test_study_keys_are_salted_hashes_without_identity(series):
    volume = load_study(series)
    key = volume.study_key("site-salt")
    assert len(key) == 16 and key != volume.study_key("other-salt")
    assert volume.study_uid not in key and "PHANTOM" not in key


def _rewrite(folder: Path, change) -> None:
    for index, file in enumerate(sorted(folder.iterdir())):
        ds = pydicom.dcmread(file)
        if change(index, ds) is not False:
            ds.save_as(file)


@pytest.mark.parametrize("case, message", [
    ("modality", "modality MR, not CT"),
    ("missing", "1 slice(s) missing"),
    ("spacing", "inconsistent slice spacing"),
    ("orientation", "different orientations"),
    ("corrupt", "not a readable DICOM file"),
    ("two-series", "2 series mixed"),
    ("compressed", "transfer syntax JPEG 2000 Image Compression (Lossless Only) is not supported"),
    ("too-big", "over the limit"),
])
def test_bad_series_are_refused_with_one_clear_reason(series, tmp_path, case, message):
    folder = copy_series(series, tmp_path / case)
    files = sorted(folder.iterdir())
    limits = StudyLimits()
    if case == "modality":
        _rewrite(folder, lambda i, ds: setattr(ds, "Modality", "MR"))
    elif case == "missing":
        files[20].unlink()
    elif case == "spacing":
        _rewrite(folder, lambda i, ds: setattr(ds, "ImagePositionPatient", [ds.ImagePositionPatient[0],
                 ds.ImagePositionPatient[1], ds.ImagePositionPatient[2] + (1.3 if i == 30 else 0.0)]))
    elif case == "orientation":
        _rewrite(folder, lambda i, ds: setattr(ds, "ImageOrientationPatient", [1, 0, 0, 0, 0.9, 0.1]) if i == 5
                 else False)
    elif case == "corrupt":
        files[7].write_bytes(files[7].read_bytes()[:300])
    elif case == "two-series":
        _rewrite(folder, lambda i, ds: setattr(ds, "SeriesInstanceUID", "1.2.3.4") if i % 2 else False)
    elif case == "compressed":
        def fake_jpeg2000(i, ds):
            from pydicom.encaps import encapsulate

            ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.90"
            ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(64)])
            ds["PixelData"].VR = "OB"
        _rewrite(folder, fake_jpeg2000)
    elif case == "too-big":
        limits = StudyLimits(max_voxels=160 * 160 * 32)
    with pytest.raises(StudyError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_study(folder, limits)


def test_single_slice_and_wrong_files_are_refused(tmp_path):
    from pydicom.data import get_testdata_file

    ct_small = Path(get_testdata_file("CT_small.dcm"))
    with pytest.raises(StudyError, match="1 slice"):
        load_study(ct_small)
    single = tmp_path / "single"
    single.mkdir()
    shutil.copy(ct_small, single / "CT_small.dcm")
    with pytest.raises(StudyError, match="1 slice"):
        load_study(single)
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(StudyError, match="expected a DICOM series folder"):
        load_study(tmp_path / "notes.txt")
    (tmp_path / "broken.nii.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(StudyError, match="cannot be read"):
        load_study(tmp_path / "broken.nii.gz")
    # truncated files: ITK alone would fill the missing voxels with zeros
    study = render((), seed=4)
    for name in ("whole.nii.gz", "whole.nii"):
        whole = write_nifti(study, tmp_path / name)
        cut = tmp_path / f"cut-{name}"
        cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
        with pytest.raises(StudyError, match="truncated"):
            load_study(cut)
    with pytest.raises(StudyError, match="not found"):
        load_study(tmp_path / "absent")


def test_preprocessing_follows_the_conventions():
    study = render((), seed=2)
    volume = CtVolume(study.hu.astype(numpy.float32), study.grid.spacing)
    ours = preprocess(volume)
    assert ours.shape == (32, 64, 64) and ours.dtype == numpy.float32
    assert ours.min() >= -1.0 and ours.max() <= 1.0
    merlin = Preprocessing(spacing=(3.0, 1.5, 1.5), shape=(160, 224, 224), hu_window=(-1000, 1000))
    fitted = preprocess(volume, merlin)
    assert fitted.shape == (160, 224, 224)
    assert fitted[0, 0, 0] == -1.0  # padding is air


def test_standard_wording_always_agrees_with_the_findings():
    rng = numpy.random.default_rng(4)
    for _ in range(200):
        present = rng.choice(INSERTABLE, size=int(rng.integers(0, 6)), replace=False)
        findings = findings_with(*present)
        draft = template_draft(findings)
        assert disagreements(f"{draft.findings_text}\n{draft.impression}", findings) == []
    normal = template_draft(findings_with())
    assert "No pulmonary nodule." in normal.findings_text and "The heart size is normal." in normal.findings_text
    assert "Not assessed by the findings model: coronary artery wall calcification, hiatal hernia" in \
        normal.findings_text


def test_the_model_text_cannot_assert_or_deny_against_the_findings():
    findings = findings_with("lung-nodule")
    model_text = json.dumps({"sentences": [{"finding": "Lung nodule", "sentence":
                                            "A 9 mm nodule in the right upper lobe with a pleural effusion."}],
                             "impression": "No nodule. Likely lung cancer with bronchiectasis."})
    draft = checked_draft(model_text, findings, "tiny-llm")
    assert "pleural effusion" not in draft.findings_text.lower().replace("no pleural effusion", "")
    assert draft.impression == "1. Pulmonary nodule."
    assert len(draft.corrections) == 2 and "states pleural effusion" in draft.corrections[0]
    assert disagreements(f"{draft.findings_text}\n{draft.impression}", findings) == []
    good = json.dumps({"sentences": [{"finding": "Lung nodule", "sentence": "A 9 mm nodule in the left lower lobe"}],
                       "impression": "Solitary pulmonary nodule; follow-up CT suggested."})
    draft = checked_draft(good, findings, "tiny-llm")
    assert "A 9 mm nodule in the left lower lobe." in draft.findings_text and draft.corrections == []
    for hostile in ("", "not json", "[]", json.dumps({"sentences": "x", "impression": 3}),
                    json.dumps({"sentences": [{"finding": "Lung nodule"}], "impression": ""})):
        draft = checked_draft(hostile, findings, "tiny-llm")
        assert disagreements(f"{draft.findings_text}\n{draft.impression}", findings) == []


def test_structured_report_and_fhir(series):
    from pydicom.filebase import DicomBytesIO

    from tango2_ros.sdm.outputs import diagnostic_report, structured_report
    from tango2_ros.sdm.pipeline import StudyReport

    volume = load_study(series)
    findings = findings_with("lung-nodule")
    report = StudyReport(volume.study_key("s"), findings, template_draft(findings), "ct-findings@1.0.0")
    sr = structured_report(report, volume)
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
    assert sr.StudyInstanceUID == volume.study_uid and sr.SeriesInstanceUID != volume.series_uid
    assert sr.CompletionFlag == "PARTIAL" and sr.VerificationFlag == "UNVERIFIED"
    texts = [item.TextValue for item in sr.ContentSequence if "TextValue" in item]
    assert report.draft.findings_text in texts and any("Lung nodule: present" in t for t in texts)
    assert any("radiologist" in t for t in texts)
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert len(evidence.ReferencedSOPSequence) == len(volume.datasets)
    buffer = DicomBytesIO()
    sr.save_as(buffer, enforce_file_format=True)
    fhir = diagnostic_report(report)
    assert fhir["resourceType"] == "DiagnosticReport" and fhir["status"] == "preliminary"
    assert fhir["identifier"][0]["value"] == report.study_key and "PHANTOM" not in json.dumps(fhir)
    with pytest.raises(ValueError, match="DICOM headers"):
        structured_report(report, CtVolume(volume.hu, volume.spacing))


def test_files_that_are_not_dicom_are_skipped_and_listed_but_a_corrupt_dicom_refuses(series, tmp_path):
    """A PACS export or `tango2 sdm phantom OUT` puts a ground truth, a README or a DICOMDIR beside the series."""
    export = tmp_path / "export"
    shutil.copytree(series, export / "series")
    (export / "truth.json").write_text('{"findings": []}')
    (export / "README.txt").write_text("exported by a PACS")
    volume = load_study(export)
    assert sorted(volume.skipped) == ["README.txt", "truth.json"] and volume.hu.shape == load_study(series).hu.shape
    broken = sorted((export / "series").iterdir())[3]
    broken.write_bytes(broken.read_bytes()[:400])  # still a DICOM file by its marker: the study is refused
    with pytest.raises(StudyError, match="not a readable DICOM file"):
        load_study(export)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    with pytest.raises(StudyError, match="no DICOM files"):
        load_study(tmp_path / "notes")


def test_the_desks_status_is_the_pacs_problem_until_the_outbox_is_sent(series, tmp_path):
    """A study whose SR the PACS cannot take is an error with the reason and its SR waits; once the PACS takes
    the next study's SR and the waiting one, the status is that study's again, with the counts."""
    from tango2_ros.sdm.outputs import Destinations, ReportDesk
    from tango2_ros.sdm.pacs import OrthancServer
    from tango2_ros.sdm.pipeline import StudyReport

    orthanc = OrthancServer(tmp_path / "orthanc")  # its ports are chosen; it is started later
    desk = ReportDesk(Destinations(pacs_dicomweb=orthanc.dicomweb, sr_outbox=str(tmp_path / "outbox")))
    volume = load_study(series)
    findings = findings_with("lung-nodule")

    def study(key: str) -> StudyReport:
        return StudyReport(key, findings, template_draft(findings), "ct-findings@1.0.0", volume=volume)

    assert (desk.status.level, desk.counts) == ("warn", {"studies": 0, "failed": 0, "stored": 0, "sr_waiting": 0})
    down = desk.finished(study("first"))
    assert down.level == "error" and "SR for study first not stored" in down.message and "outbox" in down.message
    assert down.values == {"studies": 1, "failed": 0, "stored": 0, "sr_waiting": 1}
    failed = desk.failed_study("study second: not CT")
    assert (failed.level, failed.message, failed.values["failed"]) == ("error", "study second: not CT", 1)
    orthanc.start()
    try:
        sent = desk.finished(study("third"))  # stored, and the waiting SR after it
        assert sent.level == "ok" and sent.message.startswith("report for study third")
        assert sent.values == {"studies": 2, "failed": 1, "stored": 2, "sr_waiting": 0}
    finally:
        orthanc.stop()
    assert desk.finished(study("fourth")).level == "error"  # the PACS is gone again


def test_the_worker_says_while_studies_are_being_reported(series):
    """The swap window of the reading room: busy from the first study taken until the queue is empty."""
    from tango2_ros.sdm.worker import StudyWorker

    said: list[str] = []
    worker = StudyWorker(lambda source, feedback: (said.append(f"processing {Path(source).name}"),
                                                   StudyReport("k", [], template_draft([]), "m"))[1],
                         lambda message, unexpected: said.append(f"failed: {message}"), on_busy=said.append)
    worker.start()
    try:
        worker.report(str(series))
        with pytest.raises(UserError):
            worker.report(study_key="unknown")
    finally:
        worker.stop()
    assert said == ["a study is being reported, 0 more waiting", f"processing {series.name}", ""]
