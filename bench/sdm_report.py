"""Seconds per chest-CT study on this machine, split by stage (loading a 64-slice DICOM series, preprocessing,
findings model, report text), for the f32 and int8 findings models and for the report text by the language model
(the writer the sdm profile deploys) versus the standard wording, all in one run on the same synthetic studies.

Baselines: the int8 model against f32 (ratio of the findings stage), the LLM-written text against the standard
wording (ratio of whole-study time). Run: .venv/bin/python bench/sdm_report.py [--studies N] [--json]
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median, parser, report  # noqa: E402

from tango2_ros.cli.model_files import model_file, open_llm, profile_model  # noqa: E402
from tango2_ros.cli.sdm import DEFAULT_FINDINGS_MODEL  # noqa: E402
from tango2_ros.errors import UserError  # noqa: E402
from tango2_ros.sdm.findings import FindingsModel  # noqa: E402
from tango2_ros.sdm.phantom import random_findings, render  # noqa: E402
from tango2_ros.sdm.pipeline import STAGES, LlmWriter, ReportPipeline  # noqa: E402
from tango2_ros.sdm.report import template_draft  # noqa: E402
from tango2_ros.sdm.study_files import write_dicom_series  # noqa: E402


def timings(pipeline: ReportPipeline, studies: list[Path]) -> dict[str, float]:
    pipeline.run(studies[0])  # warm-up
    per_stage = {stage: [] for stage in STAGES}
    totals, corrections = [], 0
    for study in studies:
        result = pipeline.run(study)
        for stage in STAGES:
            per_stage[stage].append(result.seconds[stage])
        totals.append(sum(result.seconds.values()))
        corrections += bool(result.draft.corrections)
    return {**{stage: round(median(values), 4) for stage, values in per_stage.items()},
            "total": round(median(totals), 4), "texts_corrected": corrections}


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--studies", type=int, default=10)
    args = p.parse_args()
    import numpy

    with tempfile.TemporaryDirectory(prefix="tango2-bench-sdm-") as scratch:
        studies = []
        for seed in range(args.studies):
            folder = Path(scratch) / f"s{seed}"
            write_dicom_series(render(random_findings(numpy.random.default_rng(seed + 90_000)), seed=90_000 + seed),
                               folder)
            studies.append(folder)
        _, _, version = model_file(DEFAULT_FINDINGS_MODEL)
        release = version.rsplit("-", 1)[0]
        f32 = FindingsModel(model_file(f"ct-findings-phantom@{release}-f32")[0], name="ct-findings", version="f32")
        results = {"f32 + standard wording": timings(ReportPipeline(f32, template_draft), studies)}
        try:  # the release ships f32 only; `make releases` builds the int8 candidate too
            int8 = FindingsModel(model_file(f"ct-findings-phantom@{release}-int8")[0], name="ct-findings",
                                 version="int8")
            results["int8 + standard wording"] = timings(ReportPipeline(int8, template_draft), studies)
        except UserError as exc:
            print(f"sdm_report: no int8 row ({exc})", file=sys.stderr)
        runtime = open_llm(profile_model("sdm", "llm"), n_ctx_per_seq=1536)  # the writer the sdm profile deploys
        try:
            results["f32 + LLM text"] = timings(ReportPipeline(f32, LlmWriter(runtime)), studies)
        finally:
            runtime.close()
    int8_row = results.get("int8 + standard wording")
    findings_ratio = int8_row["findings"] / results["f32 + standard wording"]["findings"] if int8_row else None
    llm_ratio = results["f32 + LLM text"]["total"] / results["f32 + standard wording"]["total"]
    data = {"studies": args.studies, "series": "64 slices of 160x160, 2.5 x 2.5 x 5 mm", "median_s": results,
            "int8_vs_f32_findings_ratio": findings_ratio and round(findings_ratio, 3),
            "llm_vs_standard_total_ratio": round(llm_ratio, 2)}
    lines = [f"{args.studies} studies (64-slice DICOM series), median seconds per stage on this machine:",
             f"{'configuration':<26}" + "".join(f"{s:>14}" for s in (*STAGES, "total")) + "  texts corrected"]
    for name, values in results.items():
        lines.append(f"{name:<26}" + "".join(f"{values[s]:>14.3f}" for s in (*STAGES, "total"))
                     + f"  {values['texts_corrected']}/{args.studies}")
    lines.append((f"findings stage int8/f32: {findings_ratio:.2f}x; " if findings_ratio else "")
                 + f"whole study with the LLM text / standard wording: {llm_ratio:.1f}x")
    report(args, data, lines)


if __name__ == "__main__":
    main()
