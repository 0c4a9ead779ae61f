"""The domains' learned models against the base model in service, in one run on held-out data.

The ship: the bridge assistant (`sds-bridge`, a LoRA on SmolLM2-135M-Instruct) and the untrained base model
describe the 22 Imazu and 5 textbook encounters, each turned and moved by a random amount (cases the teacher
never uses), in English and Korean, and answer one generated question per case and language. Each answer is
judged by the nodes' own checks: a description or answer "passes raw" when the check changes nothing. Reported
per model: raw pass of the descriptions per language, question accuracy per language, tokens/s and mean latency
per answer, and the learned model's ratios to the base.

Medicine: the report writer (`sdm-report`) and the base model draft the reports of phantom chest CTs (seeds from
500000: no findings-model training study and no teaching case) from what the findings model finds in them, under
the pipeline's JSON Schema. Reported per writer: drafts that pass the sentence check raw, drafts that agree with
the findings after the check (always 100 %: the check guarantees it), and BLEU-4 / ROUGE-L of the checked text
against three varied teacher drafts of the same findings, beside the standard wording's.
The farm: the tomato greenhouse's action model (`lam-tomato`) steers GreenLight through the three held-out days of
its teacher (a cold clear night, a bright day, an overcast day; never simulated for training) behind the safety
supervisor, one decision every 15 minutes, after 24 h of spin-up under the baseline; the baseline controller runs
the same days. Reported per day and model: temperature, humidity and CO2 in band over the periods it steered
itself, heating and electricity and their ratios to the baseline's, watchdog fallback, supervisor rejections and
clamps, and the raw agreement: the share of its proposals on which every actuator agrees with what the baseline
proposes for the same state (the teacher's check, tango2_ros.sdf.teaching).
Run: .venv/bin/python bench/domain_models.py [--json] [--domain sds|sdm|sdf|all] [--cases N] [--studies N]
     [--days N]
"""
from __future__ import annotations

import json
import random
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parser, report  # noqa: E402

from tango2_ros.builder.evaluate import evaluate_in_subprocess  # noqa: E402
from tango2_ros.cli.model_files import model_file, model_files  # noqa: E402
from tango2_ros.errors import UserError  # noqa: E402
from tango2_ros.sds import teaching  # noqa: E402

GROUPS = ("sds-describe/en", "sds-describe/ko", "sds-ask/en", "sds-ask/ko")
STUDY_SEED = 500_000  # phantom studies from here on were never rendered for training the findings model
BASE = "smollm2-135m-instruct@1.0.0"


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--domain", choices=("sds", "sdm", "sdf", "all"), default="all")
    p.add_argument("--release", default="sds-bridge@1.0.0-lora", help="the learned bridge assistant (NAME@SPEC)")
    p.add_argument("--writer", default="sdm-report@1.0.0-lora", help="the learned report writer (NAME@SPEC)")
    p.add_argument("--lam", default="lam-tomato@2.0.0-lora", help="the learned tomato action model (NAME@SPEC)")
    p.add_argument("--days", type=int, default=3, help="how many of the 3 held-out farm days (default all)")
    p.add_argument("--base", default=BASE, help="the model in service before them")
    p.add_argument("--cases", type=int, default=27, help="how many of the 27 held-out ship cases (default all)")
    p.add_argument("--studies", type=int, default=200, help="held-out phantom chest CTs (default 200)")
    p.add_argument("--seed", type=int, default=0, help="of the turns and moves, the questions and the references")
    args = p.parse_args()
    if args.cases < 1 or args.studies < 1 or args.days < 1:
        p.error("--cases, --studies and --days need at least 1")
    data, lines = {}, []
    needed = {"sds": (args.release, args.base), "sdm": (args.writer, args.base), "sdf": (args.lam,)}
    try:
        for domain, references in needed.items():  # a model missing is said before hours of work, not after
            for reference in references if args.domain in (domain, "all") else ():
                model_files(reference)
        for domain, part in (("sds", ship), ("sdm", medicine), ("sdf", farm)):
            if args.domain in (domain, "all"):
                data[domain], more = part(args)
                lines += more
    except UserError as exc:  # e.g. no release yet: `make releases`, or leave that domain out with --domain
        print(f"domain_models: {exc}", file=sys.stderr)
        return 2
    report(args, data, lines)
    return 0


def evaluate(models: dict[str, str], rows: list[dict], max_tokens: int) -> dict:
    """Each model's answers to the held-out rows, in its own process, judged by the teacher's check."""
    results = {}
    with tempfile.TemporaryDirectory(prefix="tango2-domain-bench-") as scratch:
        held_out = Path(scratch) / "held-out.jsonl"
        held_out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        for label, reference in models.items():
            model, adapter, _, _ = model_files(reference)
            results[label] = evaluate_in_subprocess(model, adapter, held_out, "fact_check", max_tokens, timeout_s=7200)
    return results


def ship(args) -> tuple[dict, list[str]]:
    cases = teaching.held_out_cases(args.seed)[:args.cases]
    rows = teaching.scenario_rows(cases, ("en", "ko"), random.Random(args.seed), questions_each=1)
    models = {"base": args.base, "learned": args.release}
    results = evaluate(models, rows, 720)
    base, learned = results["base"], results["learned"]
    data = {"cases": [c.name for c in cases], "answers": len(rows), "models": {}}
    lines = [f"sds bridge assistant on {len(cases)} held-out cases (Imazu + textbook, turned and moved), "
             f"{len(rows)} answers per model",
             f"{'model':<30} {'describe en':>11} {'describe ko':>11} {'ask en':>7} {'ask ko':>7} {'tok/s':>6} "
             f"{'latency s':>9}"]
    for label, reference in models.items():
        e = results[label]
        data["models"][label] = {"reference": reference, **{g: e.groups.get(g) for g in GROUPS},
                                 "all": e.metric, "tokens_per_s": e.tokens_per_s, "latency_s": e.latency_s,
                                 "peak_memory_mb": e.peak_memory_mb}
        lines.append(f"{reference:<30} " + " ".join(f"{e.groups.get(g, 0):{w}.0%}" for g, w in zip(GROUPS, (11, 11, 7, 7)))
                     + f" {e.tokens_per_s:6.1f} {e.latency_s:9.2f}")
    data["ratios"] = {"tokens_per_s": learned.tokens_per_s / base.tokens_per_s,
                      "latency_s": learned.latency_s / base.latency_s}
    lines.append(f"learned / base: tokens/s x{data['ratios']['tokens_per_s']:.2f}, latency x{data['ratios']['latency_s']:.2f}")
    return data, lines


def medicine(args) -> tuple[dict, list[str]]:
    import numpy
    from rouge_score import rouge_scorer
    from sacrebleu.metrics import BLEU

    from tango2_ros.cli.sdm import DEFAULT_FINDINGS_MODEL
    from tango2_ros.sdm import teaching as writer_teaching
    from tango2_ros.sdm.findings import FindingsModel
    from tango2_ros.sdm.phantom import Grid, random_findings, render
    from tango2_ros.sdm.report import checked_draft, disagreements, template_draft
    from tango2_ros.sdm.volume import CtVolume, preprocess

    path, name, version = model_file(DEFAULT_FINDINGS_MODEL)
    findings_model = FindingsModel(path, name=name, version=version)
    cases = []
    for seed in range(STUDY_SEED, STUDY_SEED + args.studies):
        study = render(random_findings(numpy.random.default_rng(seed)), seed=seed)
        volume = CtVolume(hu=study.hu.astype(numpy.float32), spacing=Grid().spacing)
        cases.append(findings_model.predict(preprocess(volume, findings_model.preprocessing)))
    rng = random.Random(args.seed)
    rows = [writer_teaching.report_row(findings, rng, f"phantom-{STUDY_SEED + i}") for i, findings in enumerate(cases)]

    def text(draft) -> str:
        return " ".join(f"{draft.findings_text} {draft.impression}".split())

    references = [[text(checked_draft(json.dumps(writer_teaching.teacher_answer(findings, rng)), findings, "teacher"))
                   for findings in cases] for _ in range(3)]
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)

    def wording(drafts: list) -> dict:
        hypotheses = [text(d) for d in drafts]
        return {"bleu4": round(BLEU(max_ngram_order=4).corpus_score(hypotheses, references).score, 1),
                "rouge_l": round(100 * statistics.fmean(max(scorer.score(r[i], h)["rougeL"].fmeasure for r in references)
                                                        for i, h in enumerate(hypotheses)), 1),
                "agreement_after_check": sum(not disagreements(f"{d.findings_text}\n{d.impression}", f)
                                             for d, f in zip(drafts, cases)) / len(cases)}

    models = {"base": args.base, "learned": args.writer}
    results = evaluate(models, rows, 400)
    data = {"studies": len(cases), "first_seed": STUDY_SEED, "findings_model": findings_model.label,
            "present_per_study": statistics.fmean(sum(f.present for f in c) for c in cases),
            "standard_wording": wording([template_draft(f) for f in cases]), "models": {}}
    lines = [f"sdm report writer on {len(cases)} held-out phantom studies through {findings_model.label}",
             f"{'writer':<30} {'raw pass':>8} {'agree':>6} {'BLEU-4':>7} {'ROUGE-L':>8} {'tok/s':>6} {'latency s':>9}"]
    standard = data["standard_wording"]
    lines.append(f"{'standard wording':<30} {'-':>8} {standard['agreement_after_check']:6.0%} {standard['bleu4']:7.1f} "
                 f"{standard['rouge_l']:8.1f} {'-':>6} {'-':>9}")
    for label, reference in models.items():
        e = results[label]
        scored = wording([checked_draft(out, f, reference) for out, f in zip(e.outputs, cases)])
        data["models"][label] = {"reference": reference, "raw_pass": e.metric, **scored,
                                 "tokens_per_s": e.tokens_per_s, "latency_s": e.latency_s}
        lines.append(f"{reference:<30} {e.metric:8.0%} {scored['agreement_after_check']:6.0%} {scored['bleu4']:7.1f} "
                     f"{scored['rouge_l']:8.1f} {e.tokens_per_s:6.1f} {e.latency_s:9.2f}")
    return data, lines


def farm(args) -> tuple[dict, list[str]]:
    from tango2_ros.sdf import teaching as lam_teaching
    from tango2_ros.sdf.controllers import BaselineController
    from tango2_ros.sdf.crops import PRESETS
    from tango2_ros.sdf.learning import CycleOptions, evaluate_in_simulator, observation_of

    preset = PRESETS["tomato"]
    model, adapter, _, _ = model_files(args.lam)
    data, lines = {"model": args.lam, "period_s": lam_teaching.PERIOD_S, "days": {}}, [
        f"sdf action model {args.lam} against the baseline on held-out days (a decision every "
        f"{lam_teaching.PERIOD_S / 60:.0f} min)",
        f"{'day':<29} {'controller':<10} {'temp %':>6} {'RH %':>5} {'CO2 %':>5} {'heat x':>6} {'elec x':>6} "
        f"{'fallback s':>10} {'rejected':>8} {'agree raw':>9}"]
    with tempfile.TemporaryDirectory(prefix="tango2-farm-bench-") as scratch:
        for kind, day in list(lam_teaching.HELD_OUT_DAYS.items())[:args.days]:
            options = CycleOptions(name="", version="", current="", held_out_start=day,
                                   period_s=lam_teaching.PERIOD_S)
            runs = {}
            for label, files in (("baseline", (None, None)), ("learned", (model, adapter))):
                log = Path(scratch) / f"{day}-{label}.jsonl"
                runs[label] = evaluate_in_simulator(files[0], preset, options, log, adapter=files[1])
                records = [json.loads(line) for line in log.read_text().splitlines()]
                teacher = BaselineController(preset)
                wanted = [teacher.propose(observation_of(r)) for r in records]  # in order: irrigation's hysteresis
                proposed = [(r["proposal"], w) for r, w in zip(records, wanted) if r["proposal"] is not None]
                runs[label]["agreement_raw"] = round(sum(not lam_teaching.departures(p, w) for p, w in proposed)
                                                     / max(len(proposed), 1), 3)
            base = runs["baseline"]
            for label, run in runs.items():
                run["ratios"] = {key: round(run[key] / base[key], 3) if base[key] else None
                                 for key in ("heating_mj_m2", "electricity_kwh_m2")}
                steered = run["steered_in_band_pct"]
                lines.append(f"{f'{kind} {day}':<29} {label:<10} {steered['temperature']:6.1f} "
                             f"{steered['humidity']:5.1f} {steered['co2']:5.1f} "
                             f"{run['ratios']['heating_mj_m2'] or 0:6.2f} {run['ratios']['electricity_kwh_m2'] or 0:6.2f} "
                             f"{run['fallback_s']:10.0f} {run['supervisor_rejections']:8d} {run['agreement_raw']:9.0%}")
            data["days"][f"{kind} {day}"] = runs
    return data, lines


if __name__ == "__main__":
    raise SystemExit(main())
