"""Writing synthetic studies as a scanner would: a CT Image Storage series (one file per slice, stored as
unsigned values with a rescale intercept of -1024), or a NIfTI file; plus the ground truth next to it.

The phantom's patient is fictitious (`PHANTOM^<seed>`); it still travels in the DICOM headers, which is what
the de-identification of logs and topics is tested against.
"""
from __future__ import annotations

import datetime
import json
from pathlib import Path

import numpy

from tango2_ros.sdm.phantom import Study
from tango2_ros.sdm.volume import CT_IMAGE_STORAGE

UID_ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's root for generated UIDs


def write_dicom_series(study: Study, folder: Path, *, transfer_syntax: str = "1.2.840.10008.1.2.1") -> list[Path]:
    """One file per slice, inferior to superior, axial LPS; returns the files."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    grid = study.grid
    study_uid = generate_uid(UID_ROOT, entropy_srcs=[f"study-{study.seed}"])
    series_uid = generate_uid(UID_ROOT, entropy_srcs=[f"series-{study.seed}"])
    frame_uid = generate_uid(UID_ROOT, entropy_srcs=[f"frame-{study.seed}"])
    x0, y0, z0 = grid.origin
    today = datetime.date(2026, 1, 1) + datetime.timedelta(days=study.seed % 365)
    stored = (study.hu.astype(numpy.int32) + 1024).clip(0, 4095).astype(numpy.uint16)
    files = []
    for index in range(grid.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = generate_uid(UID_ROOT, entropy_srcs=[f"sop-{study.seed}-{index}"])
        meta.TransferSyntaxUID = UID(transfer_syntax)
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CT_IMAGE_STORAGE, meta.MediaStorageSOPInstanceUID
        ds.PatientName, ds.PatientID = f"PHANTOM^{study.seed}", f"PH{study.seed:06d}"
        ds.PatientBirthDate, ds.PatientSex = "19600101", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = today.strftime("%Y%m%d")
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
        ds.AccessionNumber, ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = f"A{study.seed:06d}", "1", 1, index + 1
        ds.ReferringPhysicianName = ""
        ds.Modality, ds.Manufacturer, ds.BodyPartExamined = "CT", "TANGO2 phantom", "CHEST"
        ds.StudyDescription, ds.SeriesDescription = "CT CHEST WITHOUT CONTRAST", "Synthetic chest phantom"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [x0, y0, z0 + index * grid.spacing[0]]
        ds.SliceThickness = grid.spacing[0]
        ds.PixelSpacing = [grid.spacing[1], grid.spacing[2]]
        ds.Rows, ds.Columns = grid.shape[1], grid.shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.WindowCenter, ds.WindowWidth = -600, 1500
        ds.PixelData = stored[index].tobytes()
        file = folder / f"CT{index + 1:04d}.dcm"
        ds.save_as(file, enforce_file_format=True)
        files.append(file)
    return files


def write_nifti(study: Study, path: Path) -> Path:
    """A NIfTI file (RAS affine, as nibabel and most tools expect) of the study's Hounsfield units."""
    import nibabel

    path.parent.mkdir(parents=True, exist_ok=True)
    grid = study.grid
    x0, y0, z0 = grid.origin
    # array axes (z, y, x) -> (x, y, z); LPS -> RAS flips the sign of x and y
    data = numpy.transpose(study.hu, (2, 1, 0))
    affine = numpy.diag([-grid.spacing[2], -grid.spacing[1], grid.spacing[0], 1.0])
    affine[:3, 3] = (-x0, -y0, z0)
    nibabel.save(nibabel.Nifti1Image(data, affine), str(path))
    return path


def write_truth(study: Study, path: Path) -> Path:
    path.write_text(json.dumps({"seed": study.seed, "findings": list(study.findings), "labels": study.truth(),
                                "shape": list(study.grid.shape), "spacing_mm": list(study.grid.spacing)}, indent=2)
                    + "\n")
    return path
