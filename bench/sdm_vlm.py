"""The chest-CT vision-language model on held-out phantoms, against the classifier pipeline, in one run.

Studies: phantoms of seeds from 2000000 on (the findings model's own evaluation seeds: neither the findings network
nor the VLM trained on any of them), rendered on the scanner grid and read through the pipeline's preprocessing.
Per study, the VLM (`ct-report-vlm`, encoder + projector + LoRA on SmolLM2-135M, through llama.cpp) writes the
report from the volume; the findings classifier rates the same volume. Reported: micro-F1 (all 18 labels) of the
findings the raw text asserts against the truth, beside the classifier's micro-F1 (the ten labels it assesses) (the
baseline: the ratio is VLM / classifier); reports whose raw text disagrees with the classifier (before the check)
and, after the check, the share whose text agrees with the findings (the check's guarantee, measured); asserted
findings the truth does not hold per report; seconds per study by stage (preprocessing, encoder, language model)
and the whole VLM path against the classifier path (preprocessing + classifier); peak resident memory.
Run: .venv/bin/python bench/sdm_vlm.py [--studies N] [--vlm NAME@SPEC|BUNDLE] [--threads N] [--json]
"""
from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import numpy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parser, report  # noqa: E402

from tango2_ros.builder.ct_vlm import VlmEvaluation, evaluate  # noqa: E402
from tango2_ros.cli.model_files import model_file, model_folder  # noqa: E402
from tango2_ros.cli.sdm import DEFAULT_FINDINGS_MODEL, DEFAULT_VLM  # noqa: E402
from tango2_ros.errors import UserError  # noqa: E402
from tango2_ros.sdm.findings import FindingsModel  # noqa: E402
from tango2_ros.sdm.labels import LABEL_NAMES  # noqa: E402
from tango2_ros.sdm.phantom import Grid, random_findings, render  # noqa: E402
from tango2_ros.sdm.vlm import CtReportVlm, read_conventions  # noqa: E402
from tango2_ros.sdm.volume import CtVolume, preprocess  # noqa: E402

HELD_OUT_SEED = 2_000_000


def study(seed: int) -> tuple[CtVolume, list[bool]]:
    """A held-out phantom as the scanner gives it (HU on its grid) and its 18 true labels."""
    rng = numpy.random.default_rng(seed + 7_000_000)  # as tango2_ros.sdm.training renders its phantoms
    grid = Grid()
    phantom = render(random_findings(rng), seed=seed, grid=grid)
    truth = phantom.truth()
    return CtVolume(hu=phantom.hu.astype(numpy.float32), spacing=grid.spacing), \
        [bool(truth[label]) for label in LABEL_NAMES]


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--studies", type=int, default=200)
    p.add_argument("--vlm", default=DEFAULT_VLM, help="the VLM bundle (folder) or artifact")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    try:
        folder, name, version = model_folder(args.vlm)
        base, *_ = model_file(read_conventions(folder).base_model)
        classifier = FindingsModel(model_file(DEFAULT_FINDINGS_MODEL)[0], threads=args.threads)
    except UserError as exc:
        print(exc, file=sys.stderr)
        return 2
    vlm = CtReportVlm(folder, base, threads=args.threads, name=name, version=version)
    try:
        vlm.warm_up()
        figures, seconds = run(vlm, classifier, args.studies)
    finally:
        vlm.close()
    vlm_path = seconds["preprocessing"] + seconds["encoder"] + seconds["language_model"]
    classifier_path = seconds["preprocessing"] + seconds["classifier"]
    classifier_f1, agree_after = figures.classifier_micro_f1, figures.agreement_after_check
    data = {"vlm": vlm.identity.label, "studies": args.studies, "held_out": f"phantom seeds {HELD_OUT_SEED}+",
            "micro": figures.micro, "per_label": figures.per_label, "classifier_micro_f1": classifier_f1,
            "f1_ratio_vlm_vs_classifier": figures.micro["f1"] / classifier_f1 if classifier_f1 else float("nan"),
            "disagreement_rate_before_check": figures.disagreement_rate,
            "agreement_after_check": agree_after, "hallucinated_per_report": figures.hallucinated_per_report,
            "unusable": figures.unusable, "seconds_per_study": {**seconds, "vlm_path": vlm_path,
                                                                "classifier_path": classifier_path},
            "time_ratio_vlm_vs_classifier": vlm_path / classifier_path if classifier_path else float("nan"),
            "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    lines = [f"{vlm.identity.label} on {args.studies} held-out phantoms (seeds {HELD_OUT_SEED}+):",
             f"  micro-F1 of the asserted findings {figures.micro['f1']:.3f} (P {figures.micro['precision']:.3f}, "
             f"R {figures.micro['recall']:.3f}); classifier {classifier_f1:.3f}; ratio "
             f"{data['f1_ratio_vlm_vs_classifier']:.3f}",
             f"  raw text disagrees with the classifier in {figures.disagreement_rate:.1%} of reports; after the "
             f"check the text agrees in {agree_after:.1%}; {figures.hallucinated_per_report:.2f} hallucinated "
             f"findings per report; {figures.unusable} unusable answers",
             "  seconds per study: " + ", ".join(f"{stage} {value:.3f}" for stage, value in seconds.items()),
             f"  VLM path {vlm_path:.3f} s vs classifier path {classifier_path:.3f} s "
             f"(ratio {data['time_ratio_vlm_vs_classifier']:.1f}); peak memory {data['peak_memory_mb']:.0f} MB"]
    report(args, data, lines)
    return 0


def run(vlm: CtReportVlm, classifier: FindingsModel, count: int) -> tuple[VlmEvaluation, dict[str, float]]:
    """Every study preprocessed as the pipeline does it, then through both models (`ct_vlm.evaluate`): the
    figures, and the mean seconds per study of each stage."""
    inputs, targets, preprocessing_s = [], [], 0.0
    for seed in range(HELD_OUT_SEED, HELD_OUT_SEED + count):
        volume, truth = study(seed)
        started = time.monotonic()
        inputs.append(preprocess(volume, vlm.preprocessing)[None])
        preprocessing_s += time.monotonic() - started
        targets.append(truth)
    figures = evaluate(vlm, classifier, numpy.stack(inputs), numpy.array(targets, dtype=numpy.float32))
    return figures, {"preprocessing": preprocessing_s / count, **figures.seconds}


if __name__ == "__main__":
    raise SystemExit(main())
