"""`tango2 sdm ...`: the software-defined medicine pipeline on chest CT.

    tango2 sdm report PATH [--json] [--model ONNX|NAME@SPEC] [--writer llm|vlm|standard]
                     [--llm GGUF|NAME@SPEC] [--vlm BUNDLE|NAME@SPEC]
    tango2 sdm phantom OUT_DIR --findings lung-nodule,pleural-effusion|none [--seed N] [--format dicom|nifti]
    tango2 sdm phantom OUT_DIR --dataset N [--seed N]          (a CT-RATE-style evaluation set)
    tango2 sdm evaluate DATASET [--json] [--limit N] [--no-llm]

`report` reads a DICOM series folder, a .nii.gz or a .mha file and prints the draft report (FINDINGS,
IMPRESSION, the AI-draft notice); `--json` gives the 18 findings with probabilities and the texts. The text comes
from the learned writer reading the findings (`--writer llm`, the default), from the vision-language model reading
the volume itself (`--writer vlm`; `--json` adds its raw text, the findings it asserts and where they differ from the
findings model), or from standard wording alone (`--writer standard`, or `--no-llm`); every sentence a model writes
is checked against the findings model. `phantom`
writes a synthetic chest CT (tango2_ros/sdm/phantom.py) and its ground truth. `evaluate` runs the pipeline over a
dataset laid out like CT-RATE's: `volumes/NAME.nii.gz` (or a DICOM folder per study), `labels.csv` (VolumeName and
the 18 label columns) and `reports.csv` (VolumeName, Findings_EN, Impressions_EN).
"""
from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

from tango2_ros.cli.model_files import model_file, model_folder, open_llm, profile_model
from tango2_ros.cli.output import emit
from tango2_ros.errors import UserError
from tango2_ros.sdm.pipeline import WRITERS

DEFAULT_FINDINGS_MODEL = "ct-findings-phantom@best-hospital-edge-cpu"
DEFAULT_VLM = "ct-report-vlm@best-hospital-edge-cpu"


def register(commands) -> None:
    parser = commands.add_parser("sdm", help="software-defined medicine: chest-CT report drafts",
                                 description=__doc__)
    sub = parser.add_subparsers(dest="sdm_command", metavar="ACTION", required=True)
    report = sub.add_parser("report", help="draft a report for one study")
    report.add_argument("path", type=Path, help="DICOM series folder, .nii.gz or .mha")
    _model_arguments(report)
    report.add_argument("--json", action="store_true")
    report.set_defaults(handler=_report)
    phantom = sub.add_parser("phantom", help="write a synthetic chest CT with known findings")
    phantom.add_argument("out", type=Path, metavar="OUT_DIR")
    phantom.add_argument("--findings", default=None,
                         help="comma-separated CT-RATE label names in lower case with hyphens, or 'none'")
    phantom.add_argument("--dataset", type=int, default=0, metavar="N",
                         help="instead: N studies with random findings in a CT-RATE-style layout")
    phantom.add_argument("--seed", type=int, default=0)
    phantom.add_argument("--format", choices=("dicom", "nifti"), default=None,
                         help="default: dicom for one study, nifti for a dataset")
    phantom.add_argument("--json", action="store_true")
    phantom.set_defaults(handler=_phantom)
    evaluate = sub.add_parser("evaluate", help="findings F1, BLEU, ROUGE-L and latency over a dataset")
    evaluate.add_argument("dataset", type=Path)
    evaluate.add_argument("--limit", type=int, default=0, help="only the first N studies")
    _model_arguments(evaluate)
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(handler=_evaluate)


def _model_arguments(parser) -> None:
    parser.add_argument("--model", default=DEFAULT_FINDINGS_MODEL,
                        help=f"findings model: an ONNX file or an artifact (default {DEFAULT_FINDINGS_MODEL})")
    parser.add_argument("--llm", default=None, help="report writer: a GGUF file, a model or an adapter artifact "
                        "(default: what the sdm profile deploys, the learned writer)")
    parser.add_argument("--no-llm", action="store_true", help="standard wording only (the same as --writer standard)")
    parser.add_argument("--writer", choices=WRITERS, default="llm",
                        help="who writes the text: the language model from the findings (llm), the vision-language "
                             "model from the volume (vlm), or standard wording")
    parser.add_argument("--vlm", default=DEFAULT_VLM,
                        help=f"the vision-language model: a bundle folder or an artifact (default {DEFAULT_VLM})")


def open_pipeline(args):
    """The findings model and the report writer the arguments ask for; returns (pipeline, close)."""
    from tango2_ros.core.runtime.base import ModelLoadError
    from tango2_ros.sdm.findings import FindingsModel
    from tango2_ros.sdm.pipeline import LlmWriter, ReportPipeline
    from tango2_ros.sdm.report import template_draft
    from tango2_ros.sdm.vlm import VlmWriter

    path, name, version = model_file(args.model)
    try:
        model = FindingsModel(path, name=name, version=version)
    except ModelLoadError as exc:
        raise UserError(str(exc)) from None
    writer = "standard" if args.no_llm else args.writer
    if writer == "standard":
        return ReportPipeline(model, template_draft), lambda: None
    if writer == "vlm":
        vlm = open_vlm(args.vlm)
        return ReportPipeline(model, VlmWriter(vlm)), vlm.close
    runtime = open_llm(args.llm or profile_model("sdm", "llm"), n_ctx_per_seq=1536)
    return ReportPipeline(model, LlmWriter(runtime)), runtime.close


def _report(args) -> int:
    pipeline, close = open_pipeline(args)
    try:
        report = pipeline.run(args.path)
    finally:
        close()
    data = report.as_dict()
    data["model"] = f"{report.findings_model} + {report.draft.model}"
    data["writer"] = "standard" if args.no_llm else args.writer
    if data["writer"] == "vlm":
        data["vlm"] = vlm_summary(pipeline.writer, report.findings)
    if data["skipped_files"]:
        print(f"skipped (not DICOM): {', '.join(data['skipped_files'])}", file=sys.stderr)
    emit(args, data, report.text())
    return 0


def open_vlm(reference: str):
    """The VLM bundle and the base language model it names, loaded in this process (UserError when not)."""
    from tango2_ros.core.runtime.base import ModelLoadError
    from tango2_ros.sdm.vlm import CtReportVlm, read_conventions

    folder, name, version = model_folder(reference)
    try:
        base, *_ = model_file(read_conventions(folder).base_model)
        return CtReportVlm(folder, base, name=name, version=version)
    except ModelLoadError as exc:
        raise UserError(str(exc)) from None


def vlm_summary(writer, findings) -> dict:
    """What the VLM itself wrote, before the check: its raw text, the labels it states, where it differs."""
    from tango2_ros.sdm.vlm import disagreements_with

    answer = writer.last_answer
    return {"model": writer.vlm.identity.label, "raw_text": answer.raw_text, "asserted": answer.asserted,
            "disagreements": disagreements_with(answer.asserted, findings)}


def _phantom(args) -> int:
    from tango2_ros.sdm.phantom import render

    if args.dataset:
        if args.findings:
            raise UserError("--dataset draws random findings; leave out --findings")
        return _phantom_dataset(args)
    if args.findings is None:
        raise UserError("--findings is required (comma-separated names, or none)")
    findings = [] if args.findings.strip().lower() == "none" else [f.strip() for f in args.findings.split(",")
                                                                    if f.strip()]
    try:
        study = render(findings, seed=args.seed)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    written = _write_study(study, args.out, args.format or "dicom")
    emit(args, {"path": str(written), "truth": str(args.out / "truth.json"), "findings": list(study.findings)},
         f"wrote {written} ({', '.join(study.findings) or 'no findings'}); ground truth {args.out / 'truth.json'}")
    return 0


def _write_study(study, out: Path, fmt: str, name: str = "study") -> Path:
    from tango2_ros.sdm.study_files import write_dicom_series, write_nifti, write_truth

    out.mkdir(parents=True, exist_ok=True)
    if fmt == "dicom":
        written = out / "series" if name == "study" else out / name
        write_dicom_series(study, written)
    else:
        written = write_nifti(study, out / f"{name}.nii.gz")
    if name == "study":
        write_truth(study, out / "truth.json")
    return written


def _phantom_dataset(args) -> int:
    import numpy

    from tango2_ros.sdm.labels import LABEL_NAMES
    from tango2_ros.sdm.phantom import random_findings, render
    from tango2_ros.sdm.findings import Finding
    from tango2_ros.sdm.report import template_draft

    volumes = args.out / "volumes"
    volumes.mkdir(parents=True, exist_ok=True)
    labels, reports = [], []
    for index in range(args.dataset):
        seed = args.seed + index
        study = render(random_findings(numpy.random.default_rng(seed + 7_000_000)), seed=seed)
        name = f"phantom_{seed:06d}"
        _write_study(study, volumes, args.format or "nifti", name)
        truth = study.truth()
        labels.append({"VolumeName": name, **truth})
        reference = template_draft([Finding(n, float(truth[n]), 0.5, bool(truth[n])) for n in LABEL_NAMES])
        reports.append({"VolumeName": name, "Findings_EN": reference.findings_text.replace("\n", " "),
                        "Impressions_EN": reference.impression.replace("\n", " ")})
    _write_csv(args.out / "labels.csv", ["VolumeName", *LABEL_NAMES], labels)
    _write_csv(args.out / "reports.csv", ["VolumeName", "Findings_EN", "Impressions_EN"], reports)
    emit(args, {"path": str(args.out), "studies": args.dataset},
         f"wrote {args.dataset} studies to {volumes}, labels.csv and reports.csv")
    return 0


def _write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _evaluate(args) -> int:
    from tango2_ros.sdm.evaluation import evaluate, read_dataset

    studies = read_dataset(args.dataset)
    if args.limit:
        studies = studies[:args.limit]
    pipeline, close = open_pipeline(args)
    started = time.monotonic()
    try:
        result = evaluate(pipeline, studies, progress=lambda done, total: print(
            f"\r{done}/{total} studies", end="", file=sys.stderr, flush=True))
    finally:
        close()
        print(file=sys.stderr)
    result["wall_s"] = round(time.monotonic() - started, 1)
    micro = result["micro"]
    emit(args, result, f"{len(studies)} studies: findings micro-F1 {micro['f1']:.3f} (P {micro['precision']:.3f}, "
                       f"R {micro['recall']:.3f}) over the assessed labels, macro-F1 {result['macro_f1']:.3f}; "
                       f"text agrees with the findings in {result['agreement_pct']:.1f} % "
                       f"({result['corrected_pct']:.0f} % of drafts corrected by the check); BLEU-1 "
                       f"{result['bleu1']:.1f}, BLEU-4 {result['bleu4']:.1f}, ROUGE-L {result['rouge_l']:.1f}; "
                       f"{result['latency_s']['mean']:.2f} s per study\n" + json.dumps(result["per_label"], indent=1))
    return 0
