"""A synthetic chest-CT phantom with inserted findings and their ground truth.

No chest-CT volume or trained weights can be installed here, so the findings model is trained and evaluated on
these. Anatomy is drawn analytically in patient millimetres (DICOM LPS: x to the patient's left, y posterior,
z superior), so a study can be rendered on any grid: body (fat rim, muscle), lungs with diaphragm domes,
trachea and main bronchi, heart with epicardial fat, aorta, mediastinal fat with small normal nodes, spine,
ribs and sternum; each patient varies in size and position. Values are Hounsfield units with scanner noise.

Inserted findings (ten of the CT-RATE labels), each drawn the way it looks on a non-contrast CT:
lung nodule (12-26 mm soft-tissue spheres), pleural effusion (a dependent fluid layer), pericardial effusion (a
12-20 mm fluid rim round the heart), cardiomegaly (heart enlarged 30-45 %), emphysema (low-attenuation bullae in
the upper and middle lungs), consolidation (a dense lobar patch), atelectasis (plate-like basal bands), arterial
wall calcification (4-7 dense plaques on the aortic wall), lymphadenopathy (nodes of 20-28 mm at mediastinal
and hilar stations), medical material (a port with its catheter running into the heart). Sizes are at the
conspicuous end of the clinical range: the findings model sees 6.25 x 6.25 x 10 mm voxels. Coronary calcification
is not drawn: plaques of a few millimetres all but vanish at that resolution (tried: the network never learned them).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy

from tango2_ros.sdm.labels import LABEL_NAMES, label_of

INSERTABLE = ("lung-nodule", "pleural-effusion", "pericardial-effusion", "cardiomegaly", "emphysema",
              "consolidation", "atelectasis", "arterial-wall-calcification", "lymphadenopathy", "medical-material")
AIR, LUNG, FAT, FLUID, SOFT, BONE, CALCIUM, METAL = -1000.0, -850.0, -100.0, 8.0, 40.0, 400.0, 1100.0, 2500.0


@dataclass(frozen=True)
class Grid:
    """An axial acquisition grid: shape (slices, rows, columns), spacing (z, y, x) in mm, centred on the patient."""
    shape: tuple[int, int, int] = (64, 160, 160)
    spacing: tuple[float, float, float] = (5.0, 2.5, 2.5)

    def axes(self) -> tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
        """Voxel-centre coordinates (z, y, x) in mm; z runs from inferior to superior."""
        return tuple((numpy.arange(n) - (n - 1) / 2.0) * s for n, s in zip(self.shape, self.spacing))

    @property
    def origin(self) -> tuple[float, float, float]:
        """Patient position (x, y, z) of the first voxel."""
        z, y, x = (a[0] for a in self.axes())
        return float(x), float(y), float(z)


@dataclass
class Study:
    hu: numpy.ndarray  # int16 Hounsfield units, (slices, rows, columns)
    grid: Grid
    findings: tuple[str, ...]  # CT-RATE label names inserted
    seed: int

    def truth(self) -> dict[str, int]:
        """The 18 labels as 0/1, CT-RATE's CSV columns."""
        return {name: int(name in self.findings) for name in LABEL_NAMES}


class _Canvas:
    """Writes shapes into a volume, touching only each shape's bounding box."""

    def __init__(self, grid: Grid, fill: float) -> None:
        self.grid = grid
        self.z, self.y, self.x = grid.axes()
        self.volume = numpy.full(grid.shape, fill, dtype=numpy.float32)

    def _box(self, center, radii):
        cx, cy, cz = center
        rx, ry, rz = radii
        zs = numpy.nonzero(numpy.abs(self.z - cz) <= rz)[0]
        ys = numpy.nonzero(numpy.abs(self.y - cy) <= ry)[0]
        xs = numpy.nonzero(numpy.abs(self.x - cx) <= rx)[0]
        if not len(zs) or not len(ys) or not len(xs):
            return None
        box = (slice(zs[0], zs[-1] + 1), slice(ys[0], ys[-1] + 1), slice(xs[0], xs[-1] + 1))
        dz = (self.z[box[0]] - cz)[:, None, None]
        dy = (self.y[box[1]] - cy)[None, :, None]
        dx = (self.x[box[2]] - cx)[None, None, :]
        return box, dx, dy, dz

    def ellipsoid(self, center, radii, value: float, where: tuple[float, float] | None = None) -> None:
        """Fill an axis-aligned ellipsoid (x, y, z radii in mm); `where` limits it to voxels in [low, high]."""
        found = self._box(center, radii)
        if found is None:
            return
        box, dx, dy, dz = found
        inside = (dx / radii[0]) ** 2 + (dy / radii[1]) ** 2 + (dz / radii[2]) ** 2 <= 1.0
        self._fill(box, inside, value, where)

    def shell(self, center, radii, thickness: float, value: float) -> None:
        """An ellipsoidal shell `thickness` mm thick outside the ellipsoid (drawn before the ellipsoid itself)."""
        self.ellipsoid(center, tuple(r + thickness for r in radii), value)

    def cylinder_z(self, center_xy, radius_xy, z_range, value: float, where=None) -> None:
        """An elliptic cylinder along z."""
        (cx, cy), (rx, ry), (z0, z1) = center_xy, radius_xy, z_range
        found = self._box((cx, cy, (z0 + z1) / 2), (rx, ry, (z1 - z0) / 2))
        if found is None:
            return
        box, dx, dy, _ = found
        inside = numpy.broadcast_to((dx / rx) ** 2 + (dy / ry) ** 2 <= 1.0,
                                    tuple(s.stop - s.start for s in box))
        self._fill(box, inside, value, where)

    def segment(self, start, end, radius: float, value: float, where=None) -> None:
        """A round tube from start to end (x, y, z mm)."""
        start, end = numpy.asarray(start, float), numpy.asarray(end, float)
        center = (start + end) / 2
        half = numpy.abs(end - start) / 2 + radius
        found = self._box(tuple(center), tuple(half))
        if found is None:
            return
        box, dx, dy, dz = found
        axis = end - start
        length2 = max(float(axis @ axis), 1e-9)
        px, py, pz = dx + center[0] - start[0], dy + center[1] - start[1], dz + center[2] - start[2]
        t = numpy.clip((px * axis[0] + py * axis[1] + pz * axis[2]) / length2, 0.0, 1.0)
        distance2 = (px - t * axis[0]) ** 2 + (py - t * axis[1]) ** 2 + (pz - t * axis[2]) ** 2
        self._fill(box, distance2 <= radius ** 2, value, where)

    def _fill(self, box, inside, value: float, where) -> None:
        region = self.volume[box]
        if where is not None:
            inside = inside & (region >= where[0]) & (region <= where[1])
        region[inside] = value


def render(findings: tuple[str, ...] | list[str] = (), seed: int = 0, grid: Grid = Grid()) -> Study:
    """Draw one patient with the given findings (command-line names, e.g. `lung-nodule`) on `grid`."""
    names = []
    for slug in findings:
        if slug not in INSERTABLE:
            label = label_of(slug)  # unknown names raise ValueError with the known ones
            raise ValueError(f"the phantom cannot draw {label.slug!r} (it draws: {', '.join(INSERTABLE)})")
        names.append(label_of(slug).name)
    wanted = set(findings)
    rng = numpy.random.default_rng(seed)
    u = rng.uniform
    canvas = _Canvas(grid, AIR)
    scale = u(0.9, 1.1)
    shift = (u(-8, 8), u(-6, 6), u(-10, 10))

    def at(x, y, z):
        return (shift[0] + x * scale, shift[1] + y * scale, shift[2] + z)

    # body: fat rim then muscle, from the abdomen to above the apices
    body = (165 * scale, 118 * scale)
    z_body = (-400.0, 400.0)
    canvas.cylinder_z(at(0, 0, 0)[:2], body, z_body, FAT)
    canvas.cylinder_z(at(0, 0, 0)[:2], (body[0] - 12, body[1] - 12), z_body, SOFT)
    # mediastinal fat, then the organs inside it
    canvas.ellipsoid(at(5, -10, -10), (60 * scale, 55 * scale, 140), FAT)
    lung_y, lung_r = -5.0, (58 * scale, 80 * scale, 125 * u(0.9, 1.05))
    for side in (-1, 1):
        canvas.ellipsoid(at(side * 82, lung_y, 10), lung_r, LUNG)
    # the mediastinum cuts into the medial lungs
    canvas.ellipsoid(at(8, -15, -30), (38 * scale, 60 * scale, 120), FAT, where=(LUNG - 1, LUNG + 1))
    # heart, epicardial fat first (a pericardial effusion replaces it with fluid)
    heart_scale = u(1.30, 1.45) if "cardiomegaly" in wanted else u(0.92, 1.05)
    heart_center = at(25, -25, -55)
    heart_radii = tuple(r * scale * heart_scale for r in (50, 42, 45))
    rim = (u(12, 20), FLUID) if "pericardial-effusion" in wanted else (3.0, FAT)
    canvas.shell(heart_center, heart_radii, rim[0], rim[1])
    canvas.ellipsoid(heart_center, heart_radii, SOFT)
    # great vessels: ascending aorta, arch, descending aorta
    aorta_r = 13 * scale
    ascending, arch, descending = at(10, -20, -10), at(5, 10, 75), at(-20 + 40, 45, -160)
    canvas.segment(ascending, arch, aorta_r, SOFT)
    canvas.segment(arch, at(20, 45, 60), aorta_r, SOFT)
    canvas.segment(at(20, 45, 60), descending, aorta_r * 0.9, SOFT)
    # airways: trachea to the carina, main bronchi into each lung
    carina = at(0, 5, 45)
    canvas.segment(at(0, -5, 400), carina, 9 * scale, AIR)
    for side in (-1, 1):
        canvas.segment(carina, at(side * 55, 10, 15), 6 * scale, AIR)
    # small normal mediastinal nodes
    for _ in range(2):
        canvas.ellipsoid(at(u(-15, 20), u(-5, 20), u(20, 60)), (4, 4, 4), SOFT, where=(FAT - 1, FAT + 1))
    # bone: spine, sternum, ribs
    canvas.cylinder_z(at(0, 95, 0)[:2], (18 * scale, 16 * scale), z_body, BONE)
    canvas.cylinder_z(at(0, 95, 0)[:2], (12 * scale, 10 * scale), z_body, 250.0)
    canvas.cylinder_z(at(0, -105, 0)[:2], (14 * scale, 5 * scale), (-120, 120), BONE)
    for z in numpy.arange(-160, 160, 26.0):
        ring_outer, ring_inner = (body[0] - 16, body[1] - 16), (body[0] - 23, body[1] - 23)
        found = canvas._box(at(0, 0, z), (ring_outer[0], ring_outer[1], 4.5))
        if found:
            box, dx, dy, _ = found
            radius = (dx / ring_outer[0]) ** 2 + (dy / ring_outer[1]) ** 2
            inner = (dx / ring_inner[0]) ** 2 + (dy / ring_inner[1]) ** 2
            canvas._fill(box, numpy.broadcast_to((radius <= 1) & (inner > 1) & (dy > -60),
                                                 tuple(s.stop - s.start for s in box)), BONE, None)

    lung_band = (LUNG - 200, LUNG + 1)  # voxels that are (still) lung
    if "emphysema" in wanted:
        for _ in range(int(u(20, 32))):
            side = rng.choice((-1, 1))
            canvas.ellipsoid(at(side * 82 + u(-35, 35), lung_y + u(-45, 45), u(20, 110)), (u(7, 14),) * 3, -990.0,
                             where=lung_band)
    if "lung-nodule" in wanted:
        for _ in range(int(rng.integers(1, 4))):
            side = rng.choice((-1, 1))
            radius = u(6, 13)
            canvas.ellipsoid(at(side * 82 + u(-25, 25), lung_y + u(-40, 40), u(-30, 90)), (radius,) * 3, SOFT,
                             where=lung_band)
    if "consolidation" in wanted:
        side = rng.choice((-1, 1))
        canvas.ellipsoid(at(side * 85 + u(-10, 10), lung_y + u(-20, 30), u(-40, 40)), (u(25, 35), u(25, 40),
                         u(25, 40)), 35.0, where=lung_band)
    if "atelectasis" in wanted:
        for side in rng.choice((-1, 1), size=int(rng.integers(1, 3)), replace=False):
            canvas.ellipsoid(at(side * 80 + u(-10, 10), lung_y + u(0, 30), u(-75, -55)), (u(30, 40), u(22, 30), 5),
                             50.0, where=lung_band)
    if "pleural-effusion" in wanted:
        for side in rng.choice((-1, 1), size=int(rng.integers(1, 3)), replace=False):
            depth = u(25, 45)  # mm of fluid at the back of the lung
            center = at(side * 82, lung_y, 10)
            found = canvas._box(center, lung_r)
            box, dx, dy, dz = found
            dependent = (dy >= lung_r[1] - depth) & (dz < 40)
            shape = tuple(s.stop - s.start for s in box)
            canvas._fill(box, numpy.broadcast_to(dependent, shape), FLUID, lung_band)
    if "arterial-wall-calcification" in wanted:
        for _ in range(int(rng.integers(4, 8))):
            t = u(0, 1)
            a, b = (arch, at(20, 45, 60)) if t < 0.3 else (at(20, 45, 60), descending)
            point = numpy.asarray(a) + (numpy.asarray(b) - numpy.asarray(a)) * u(0, 1)
            angle = u(0, 2 * numpy.pi)
            wall = point + aorta_r * 0.9 * numpy.array([numpy.cos(angle), numpy.sin(angle), 0.0])
            canvas.ellipsoid(tuple(wall), (5.5, 5.5, u(6, 10)), CALCIUM)
    if "lymphadenopathy" in wanted:  # enlarged nodes at some of the mediastinal and hilar stations
        stations = ((-22, -8, 62), (0, 22, 25), (22, 0, 55), (-38, 12, 30), (38, 12, 30))
        for index in rng.choice(len(stations), size=int(rng.integers(2, 4)), replace=False):
            radius = u(10, 14)
            x, y, z = stations[index]
            canvas.ellipsoid(at(x + u(-4, 4), y + u(-4, 4), z + u(-6, 6)), (radius, radius, radius * 1.2), SOFT,
                             where=(LUNG - 1, FAT + 1))
    if "medical-material" in wanted:  # a port catheter from the right subclavian region into the heart
        entry = at(-70, -70, 110)
        canvas.segment(entry, at(-25, -30, 60), 2.5, METAL)
        canvas.segment(at(-25, -30, 60), heart_center, 2.5, METAL)
        canvas.ellipsoid(at(-75, -95, 115), (14, 7, 14), METAL)

    volume = canvas.volume
    volume += rng.normal(0.0, 12.0, size=volume.shape).astype(numpy.float32)
    hu = numpy.clip(numpy.rint(volume), -1024, 3071).astype(numpy.int16)
    return Study(hu=hu, grid=grid, findings=tuple(sorted(names, key=LABEL_NAMES.index)), seed=seed)


def random_findings(rng: numpy.random.Generator, normal_fraction: float = 0.25,
                    mean_findings: float = 2.0) -> tuple[str, ...]:
    """A random set of insertable findings: none for about `normal_fraction` of studies, else 1 or more."""
    if rng.uniform() < normal_fraction:
        return ()
    count = min(len(INSERTABLE), 1 + int(rng.poisson(max(mean_findings - 1.0, 0.0))))
    return tuple(sorted(rng.choice(INSERTABLE, size=count, replace=False)))
