"""Chest-CT studies in and out: DICOM series (checked slice by slice), NIfTI and MetaImage files, and the
preprocessing a findings model expects.

A loaded `CtVolume` is Hounsfield units in (slices, rows, columns) order on an axial LPS grid (x to the patient's
left, y posterior, z superior, slices inferior to superior), whatever the file's own order was. Everything a
study can do wrong is a `StudyError` with one line that names the problem: not CT, several series, too few
slices, mixed orientation or pixel spacing, missing slices (a gap of whole slice spacings), uneven spacing,
compressed pixel data we cannot decode, a corrupt file, a volume over the size limit.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy

from tango2_ros.core.settings import setting
from tango2_ros.errors import UserError

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2"}
VOLUME_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd")


class StudyError(UserError):
    """The study cannot be used; the message says why in one line."""


@dataclass(frozen=True)
class StudyLimits:
    min_slices: int = setting(16, "Studies with fewer slices are refused.", 1, 10000)
    max_voxels: int = setting(512 * 512 * 1200, "Larger studies are refused.", 1, 2 ** 31 - 1)
    spacing_tolerance: float = 0.05  # relative deviation allowed between slice gaps


@dataclass
class CtVolume:
    hu: numpy.ndarray  # float32, (slices, rows, columns), axial LPS
    spacing: tuple[float, float, float]  # (z, y, x) mm
    study_uid: str = ""
    series_uid: str = ""
    frame_uid: str = ""
    source: str = ""  # what was read (a path), for messages
    datasets: list = field(default_factory=list)  # the DICOM headers in slice order (no pixel data), if DICOM
    skipped: list[str] = field(default_factory=list)  # files of the study folder that are not DICOM

    def study_key(self, salt: str) -> str:
        """A de-identified key: a salted hash of the Study Instance UID (or of the file's content for files)."""
        return study_key_of(self.study_uid or hashlib.sha256(self.hu.tobytes()).hexdigest(), salt)


def study_key_of(identity: str, salt: str) -> str:
    """The de-identified key of a study (its Study Instance UID, salted and hashed)."""
    return hashlib.sha256(f"{salt}:{identity}".encode()).hexdigest()[:16]


def load_study(path: str | Path, limits: StudyLimits = StudyLimits()) -> CtVolume:
    """A DICOM series folder, or a .nii/.nii.gz/.mha/.mhd file.

    A folder may hold files that are not DICOM at all (a ground truth, a README, as exports from a PACS carry):
    they are skipped and listed in `CtVolume.skipped`; a DICOM file that is corrupt refuses the study."""
    path = Path(path)
    if not path.exists():
        raise StudyError(f"{path}: not found")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        dicom = [p for p in files if is_dicom_file(p)]
        if not dicom:
            raise StudyError(f"{path}: no DICOM files" + (f" (only {', '.join(p.name for p in files[:3])})"
                                                           if files else ""))
        volume = load_dicom_series(dicom, limits, str(path))
        volume.skipped = [str(p.relative_to(path)) for p in files if p not in set(dicom)]
        return volume
    if path.name.lower().endswith(VOLUME_SUFFIXES):
        return load_volume_file(path, limits)
    if path.suffix.lower() == ".dcm":
        return load_dicom_series([path], limits, str(path))
    raise StudyError(f"{path}: expected a DICOM series folder or a {', '.join(VOLUME_SUFFIXES)} file")


def is_dicom_file(path: Path) -> bool:
    """A DICOM Part 10 file (the 'DICM' marker after the 128-byte preamble), other than a DICOMDIR; a file of that
    kind that is corrupt beyond the marker still counts, so that it refuses its study."""
    try:
        with path.open("rb") as file:
            head = file.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM" and path.name.upper() != "DICOMDIR"


def load_dicom_series(files: list[Path], limits: StudyLimits, source: str) -> CtVolume:
    import pydicom
    from pydicom.errors import InvalidDicomError

    if not files:
        raise StudyError(f"{source}: no files")
    datasets = []
    for file in files:
        try:  # pixel data stays on disk until used (after the size check)
            datasets.append(pydicom.dcmread(file, defer_size="4 KB"))
        except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
            raise StudyError(f"{file.name}: not a readable DICOM file ({str(exc).splitlines()[0][:80]})") from None
        if "PixelData" not in datasets[-1] or "SOPClassUID" not in datasets[-1]:
            raise StudyError(f"{file.name}: not a readable DICOM file (truncated, or not an image)")
    return datasets_to_volume(datasets, limits, source)


def datasets_to_volume(datasets: list, limits: StudyLimits = StudyLimits(), source: str = "series") -> CtVolume:
    """Assemble the datasets of one series (read from files, or received over the network) into a volume."""
    headers = [(None, ds) for ds in datasets]
    if not headers:
        raise StudyError(f"{source}: no images")
    first = headers[0][1]
    for _, ds in headers:
        modality = str(getattr(ds, "Modality", ""))
        if modality != "CT":
            raise StudyError(f"{source}: modality {modality or 'missing'}, not CT")
        if str(getattr(ds, "SOPClassUID", "")) not in (CT_IMAGE_STORAGE, ENHANCED_CT_IMAGE_STORAGE):
            raise StudyError(f"{source}: SOP class {getattr(ds, 'SOPClassUID', 'missing')} is not a CT image")
    series = {str(getattr(ds, "SeriesInstanceUID", "")) for _, ds in headers}
    if len(series) > 1:
        raise StudyError(f"{source}: {len(series)} series mixed; send one series per study")
    if len(headers) < limits.min_slices:
        raise StudyError(f"{source}: {len(headers)} slice(s); a chest CT volume needs at least {limits.min_slices}")
    rows, columns = int(first.Rows), int(first.Columns)
    if rows * columns * len(headers) > limits.max_voxels:
        raise StudyError(f"{source}: {columns}x{rows}x{len(headers)} voxels is over the limit of {limits.max_voxels}")
    orientation = _floats(first, "ImageOrientationPatient", 6, source)
    pixel_spacing = _floats(first, "PixelSpacing", 2, source)
    for _, ds in headers:
        if (int(ds.Rows), int(ds.Columns)) != (rows, columns):
            raise StudyError(f"{source}: slices of different sizes")
        if not numpy.allclose(_floats(ds, "ImageOrientationPatient", 6, source), orientation, atol=1e-3):
            raise StudyError(f"{source}: slices with different orientations")
        if not numpy.allclose(_floats(ds, "PixelSpacing", 2, source), pixel_spacing, atol=1e-3):
            raise StudyError(f"{source}: slices with different pixel spacing")
    row_dir, column_dir = numpy.array(orientation[:3]), numpy.array(orientation[3:])
    normal = numpy.cross(row_dir, column_dir)
    if abs(normal[2]) < 0.99 or abs(row_dir[0]) < 0.99:
        raise StudyError(f"{source}: not an axial series (orientation {orientation}); only axial CT is supported")
    positions = numpy.array([_floats(ds, "ImagePositionPatient", 3, source) @ normal for _, ds in headers])
    order = numpy.argsort(positions * numpy.sign(normal[2]))  # inferior to superior
    gaps = numpy.diff(positions[order] * numpy.sign(normal[2]))
    if numpy.any(gaps < 1e-3):
        raise StudyError(f"{source}: two slices at the same position")
    step = float(numpy.median(gaps))
    uneven = numpy.abs(gaps - step) > limits.spacing_tolerance * step
    if uneven.any():
        multiples = gaps[uneven] / step
        if numpy.allclose(multiples, numpy.round(multiples), atol=limits.spacing_tolerance) and (multiples > 1.5).all():
            missing = int(numpy.round(multiples).sum() - len(multiples))
            raise StudyError(f"{source}: {missing} slice(s) missing (gaps of {', '.join(f'{g:.1f}' for g in gaps[uneven])}"
                             f" mm in a {step:.1f} mm series)")
        raise StudyError(f"{source}: inconsistent slice spacing ({gaps.min():.2f} to {gaps.max():.2f} mm)")
    hu = numpy.empty((len(headers), rows, columns), dtype=numpy.float32)
    ordered = [headers[i] for i in order]
    for index, (_, ds) in enumerate(ordered):
        hu[index] = _slice_hu(ds, source)
    if row_dir[0] < 0:
        hu = hu[:, :, ::-1]
    if column_dir[1] < 0:
        hu = hu[:, ::-1, :]
    return CtVolume(hu=numpy.ascontiguousarray(hu), spacing=(step, float(pixel_spacing[0]), float(pixel_spacing[1])),
                    study_uid=str(getattr(first, "StudyInstanceUID", "")), series_uid=series.pop(),
                    frame_uid=str(getattr(first, "FrameOfReferenceUID", "")), source=source,
                    datasets=[ds for _, ds in ordered])


def _slice_hu(ds, source: str) -> numpy.ndarray:
    syntax = ds.file_meta.TransferSyntaxUID if hasattr(ds, "file_meta") and "TransferSyntaxUID" in ds.file_meta \
        else None
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - pydicom raises several types for undecodable pixel data
        name = getattr(syntax, "name", syntax) or "unknown"
        if syntax is not None and str(syntax) not in UNCOMPRESSED:
            raise StudyError(f"{source}: transfer syntax {name} is not supported here (send uncompressed or "
                             f"JPEG-LS/RLE)") from None
        raise StudyError(f"{source}: pixel data cannot be read ({str(exc).splitlines()[0][:80]})") from None
    slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
    intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
    return pixels.astype(numpy.float32) * slope + intercept


def _floats(ds, keyword: str, count: int, source: str) -> numpy.ndarray:
    value = getattr(ds, keyword, None)
    try:
        array = numpy.array([float(v) for v in value], dtype=float)
    except (TypeError, ValueError):
        array = numpy.array([])
    if array.shape != (count,) or not numpy.isfinite(array).all():
        raise StudyError(f"{source}: {keyword} is missing or malformed")
    return array


def load_volume_file(path: Path, limits: StudyLimits) -> CtVolume:
    import SimpleITK as sitk

    _check_complete(path)
    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        size = reader.GetSize()
        if len(size) != 3:
            raise StudyError(f"{path.name}: a {len(size)}-D image, not a CT volume")
        if int(numpy.prod(size)) > limits.max_voxels:
            raise StudyError(f"{path.name}: {'x'.join(map(str, size))} voxels is over the limit of {limits.max_voxels}")
        image = sitk.DICOMOrient(reader.Execute(), "LPS")
    except RuntimeError as exc:
        raise StudyError(f"{path.name}: cannot be read ({str(exc).strip().splitlines()[-1][:80]})") from None
    if image.GetSize()[2] < limits.min_slices:
        raise StudyError(f"{path.name}: {image.GetSize()[2]} slice(s); a chest CT volume needs at least "
                         f"{limits.min_slices}")
    hu = sitk.GetArrayFromImage(image).astype(numpy.float32)
    sx, sy, sz = image.GetSpacing()
    return CtVolume(hu=hu, spacing=(sz, sy, sx), source=str(path))


def _check_complete(path: Path) -> None:
    """ITK reads a truncated NIfTI without complaint (the missing voxels come back as zeros): check first."""
    import gzip
    import zlib

    name = path.name.lower()
    try:
        if name.endswith(".gz"):
            with gzip.open(path, "rb") as stream:
                while stream.read(1 << 22):
                    pass
        elif name.endswith(".nii"):
            import nibabel

            header = nibabel.load(str(path)).header
            needed = int(header["vox_offset"]) + int(numpy.prod(header.get_data_shape())) * header.get_data_dtype().itemsize
            if path.stat().st_size < needed:
                raise StudyError(f"{path.name}: cannot be read (truncated: {path.stat().st_size} of {needed} bytes)")
    except (EOFError, OSError, zlib.error, ValueError) as exc:
        raise StudyError(f"{path.name}: cannot be read (truncated or corrupt: {str(exc).splitlines()[0][:60]})") from None


@dataclass(frozen=True)
class Preprocessing:
    """Model input conventions. The defaults are this project's phantom model; CT-RATE's would be
    spacing (1.5, 0.75, 0.75), shape (240, 480, 480); Merlin's (3, 1.5, 1.5), (160, 224, 224)."""
    spacing: tuple[float, float, float] = (10.0, 6.25, 6.25)  # (z, y, x) mm
    shape: tuple[int, int, int] = (32, 64, 64)
    hu_window: tuple[float, float] = (-1000.0, 1000.0)
    scale: float = 1000.0  # HU / scale after clipping (CT-CLIP: [-1, 1])


def preprocess(volume: CtVolume, conventions: Preprocessing = Preprocessing()) -> numpy.ndarray:
    """HU -> clipped -> resampled to the model's spacing (anti-aliased) -> centre crop/pad -> scaled, float32."""
    from scipy import ndimage

    low, high = conventions.hu_window
    hu = numpy.clip(volume.hu, low, high)
    factors = [s / t for s, t in zip(volume.spacing, conventions.spacing)]
    sigma = [max((1.0 / f - 1.0) / 2.0, 0.0) for f in factors]  # smooth before shrinking, not before enlarging
    if any(s > 0 for s in sigma):
        hu = ndimage.gaussian_filter(hu, sigma, mode="nearest")
    resampled = ndimage.zoom(hu, factors, order=1, mode="nearest", grid_mode=True)
    fitted = numpy.full(conventions.shape, low, dtype=numpy.float32)
    source, target = [], []
    for have, want in zip(resampled.shape, conventions.shape):
        if have >= want:
            start = (have - want) // 2
            source.append(slice(start, start + want))
            target.append(slice(0, want))
        else:
            start = (want - have) // 2
            source.append(slice(0, have))
            target.append(slice(start, start + have))
    fitted[tuple(target)] = resampled[tuple(source)]
    return fitted / conventions.scale
