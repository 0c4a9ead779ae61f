"""ct_report: chest-CT studies in from the PACS, draft reports out (software-defined medicine).

Studies arrive by DICOM C-STORE (`dicom_port`, only from `allowed_aets`, CT image storage only) or by the
`ReportCT` action (`sdm/report_ct`: a series folder, a .nii.gz/.mha file, or the key of a study received earlier,
with stage/progress feedback). One worker thread runs each through tango2_ros.sdm.pipeline: the findings model
(ONNX, hot-swapped through `~/load_model`) -> the report text (`writer`): from the llm_node (`llm`: `llm_action`,
Generate with the findings' JSON Schema; empty = standard wording), from the chest-CT vision-language model reading
the volume in this node (`vlm`: `vlm_bundle` on `vlm_base` at configure, or deployed and hot-swapped by the model
manager through `~/vlm/load_model`, status `<node>/vlm` on /diagnostics: a slot's node `.../ct_report/vlm`), or
standard wording (`standard`); every sentence a model writes is checked against the findings
-> `CTReport` on `sdm/report`, the SR to the PACS over STOW-RS
(`pacs_dicomweb`, through the `sr_outbox` when the PACS cannot take it) and a FHIR DiagnosticReport (`fhir_dir`).
Logs and topics carry only a de-identified study key. A bad study fails with its reason on /diagnostics and in
the action result, and nothing is sent to the PACS for it. With `shadow_llm_action` a candidate writer in an
llm_node of its own is asked after each draft is out (tango2_ros.sdm.shadowing): its raw draft is judged by the
sentence check, never used, and its score (`shadow` on /diagnostics) is promoted or retired by the `shadow.*`
gate, which a shadow slot of the model manager follows. See docs/sdm.md.
"""
from __future__ import annotations

from contextlib import contextmanager

from rclpy.action import ActionServer, GoalResponse

from tango2_msgs.action import ReportCT
from tango2_msgs.msg import CTReport
from tango2_ros.core.runtime.base import ModelLoadError, NoModelError
from tango2_ros.core.runtime.serving import ModelSpec, ServingStatus
from tango2_ros.core.shadow import ShadowGate
from tango2_ros.errors import UserError
from tango2_ros.nodes.base import OK, WARN, Tango2Node, run_node
from tango2_ros.nodes.serving import LEVELS, ModelService
from tango2_ros.ros.conversions.medicine import report_to_ros
from tango2_ros.ros.llm_client import LlmClient, ShadowCandidate
from tango2_ros.sdm.findings import Finding, FindingsModel
from tango2_ros.sdm.outputs import Destinations, ReportDesk
from tango2_ros.sdm.pacs import ReceiverSettings, StoreReceiver
from tango2_ros.sdm.pipeline import WRITERS, ReportPipeline, StudyReport
from tango2_ros.sdm.report import Draft, asked_draft, prompt, schema
from tango2_ros.sdm.shadowing import judge_draft
from tango2_ros.sdm.vlm import CtReportVlm, VlmWriter
from tango2_ros.sdm.volume import StudyLimits
from tango2_ros.sdm.worker import StudyWorker


class CtReportNode(Tango2Node):
    def __init__(self) -> None:
        super().__init__("ct_report")
        self.declare("findings_model", "", "ONNX findings model with tango2.ct_findings metadata; empty = none until "
                     "the model manager deploys one through ~/load_model.")
        self.declare("writer", "llm", "Who writes the text: llm (the llm_node, from the findings), vlm (the "
                     "vision-language model, from the volume) or standard (standard wording).")
        self.declare("llm_action", "/tango2/llm/generate", "Generate action of the llm_node; empty = standard wording.")
        self.declare("vlm_bundle", "", "Folder of the VLM bundle (ct-encoder.onnx, ct-projector.onnx, adapter) for "
                     "writer vlm; empty = none until the model manager deploys one through ~/vlm/load_model.")
        self.declare("vlm_base", "", "The GGUF language model the VLM bundle runs on.")
        self.declare("vlm_threads", 2, "CPU threads of the VLM.", min_value=1, max_value=64)
        self.declare("llm_timeout_s", 120.0, "Give up on the language model after this; standard wording then.",
                     min_value=1.0, max_value=3600.0)
        self.declare("shadow_llm_action", "", "Generate action of a candidate writer in shadow, asked after each "
                     "draft is out; its drafts are judged, never used. Empty = none.")
        self.declare_settings(ShadowGate, "shadow.")
        self.declare_settings(ReceiverSettings)
        self.declare_settings(Destinations)
        self.declare("study_salt", "tango2", "Salt of the de-identified study key.")
        self.declare_settings(StudyLimits)
        self.model = ModelService(self, lambda spec, _beside: FindingsModel(spec.path, name=spec.name,
                                                                            version=spec.version),
                                  30.0, "reading of a blank volume")
        self.vlm = ModelService(self, lambda spec, _beside: CtReportVlm(
            spec.path, spec.base, threads=self.param("vlm_threads"), name=spec.name, version=spec.version),
            60.0, "report of a blank volume", part="vlm")
        self._worker = StudyWorker(self._process, self._on_failure, on_busy=self.hold_swaps)
        self._desk = ReportDesk()
        self._receiver = self._llm = self._action = self._publisher = self._shadow = None
        self._writer = "llm"  # as configured

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def configure(self) -> None:
        writer = self.param("writer")
        if writer not in WRITERS:
            raise ValueError(f"writer {writer!r} is not one of {', '.join(WRITERS)}")
        self._writer = writer
        try:
            if writer == "vlm" and self.param("vlm_bundle"):
                self.vlm.load(ModelSpec(self.param("vlm_bundle"), base=self.param("vlm_base")), required=True)
            if self.param("findings_model"):
                self.model.load(ModelSpec(self.param("findings_model")), required=True)
        except ModelLoadError:
            self.vlm.stop()  # a failed transition leaves nothing loaded
            raise
        self.model.start()
        if writer == "vlm":
            self.vlm.start()
        self._publisher = self.create_lifecycle_publisher(CTReport, "sdm/report", 10)
        if self.param("llm_action") and writer == "llm":
            self._llm = LlmClient(self, self.param("llm_action"), callback_group=self.coroutine_group)
        if self.param("shadow_llm_action"):
            self._shadow = ShadowCandidate(self, self.param("shadow_llm_action"), judge_draft,
                                           timeout_s=self.param("llm_timeout_s"), max_tokens=400)
        self._desk.deliver_to(self.settings(Destinations))
        self._action = ActionServer(self, ReportCT, "sdm/report_ct", execute_callback=self._execute,
                                    goal_callback=self._accept_goal, callback_group=self.coroutine_group)
        self._worker.start()
        self._report(self._desk.status)

    def activate(self) -> None:
        receiving = self.settings(ReceiverSettings)
        if receiving.dicom_port:
            self._receiver = StoreReceiver.serving(receiving, self._on_series, int(self.param("max_voxels") * 2.5))
        waiting = (WARN, "ready, waiting for a findings model (~/load_model)")
        self.set_status(*((OK, "ready") if self.model.label else waiting), model=self.model.label)

    def deactivate(self) -> None:
        if self._receiver is not None:
            self._receiver.stop()
            self._receiver = None

    def cleanup(self) -> None:
        self.deactivate()
        self._worker.stop()
        for entity in (self._action, self._llm, self._shadow):
            if entity is not None:
                entity.destroy()
        if self._publisher is not None:
            self.destroy_lifecycle_publisher(self._publisher)
        self._action = self._llm = self._publisher = self._shadow = None
        self.vlm.stop()
        self.model.stop()

    # -- inputs ------------------------------------------------------------------------------------------------
    def _on_series(self, datasets: list, calling_aet: str) -> None:
        self._worker.submit_series(datasets, self.settings(StudyLimits), calling_aet)

    def _accept_goal(self, goal: ReportCT.Goal) -> GoalResponse:
        return GoalResponse.ACCEPT if self.is_active and (goal.study_path or goal.study_key) else GoalResponse.REJECT

    async def _execute(self, goal_handle) -> ReportCT.Result:
        request = goal_handle.request

        def feedback(stage: str, progress: float) -> None:
            goal_handle.publish_feedback(ReportCT.Feedback(stage=stage, progress=progress))

        try:
            report = await self.in_background(lambda: self._worker.report(request.study_path, request.study_key,
                                                                          feedback))
        except UserError as exc:
            goal_handle.abort()
            return ReportCT.Result(success=False, message=str(exc))
        goal_handle.succeed()
        return ReportCT.Result(success=True, message="draft written", report=self._message(report))

    # -- one study (in the worker's thread) ------------------------------------------------------------------
    def _process(self, source, feedback) -> StudyReport:
        if self._shadow is not None:
            self._shadow.preempt()  # the serving writer goes first
        with self._models() as (model, writer):
            report = ReportPipeline(model, writer, self.settings(StudyLimits), self.param("study_salt")).run(
                source, feedback)
        self.model.count(model.label, False)
        if isinstance(writer, VlmWriter):
            self.vlm.count(writer.vlm.identity.label, False)
        feedback("storing", 0.8)
        self._report(self._desk.finished(report), model.label)
        self._publisher.publish(self._message(report))
        feedback("storing", 1.0)
        return report

    @contextmanager
    def _models(self):
        """(findings model, writer) leased for one study: a swap waits for the study, then serves the next."""
        try:
            with self.model.served.slot.lease() as model:
                if self._writer != "vlm":
                    yield model, self._write
                    return
                with self.vlm.served.slot.lease() as vlm:
                    yield model, VlmWriter(vlm)
        except NoModelError as exc:
            needed = "VLM (~/vlm/load_model)" if self.model.label else "findings model (~/load_model)"
            raise UserError(f"no {needed} is loaded yet: the model manager deploys one") from exc

    def _on_failure(self, message: str, unexpected: bool) -> None:
        if unexpected:
            self.model.count(self.model.label, True)
        self._report(self._desk.failed_study(message))

    def _report(self, status: ServingStatus, model: str = "") -> None:
        self.set_status(LEVELS[status.level], status.message, model=model or self.model.label, **status.values)

    def _write(self, findings: list[Finding]) -> Draft:
        """The llm_node writes; on no server, a refusal, an error or a timeout the standard wording does."""
        draft = asked_draft(findings, self._llm and self._llm.asking(timeout_s=self.param("llm_timeout_s"),
                                                                     max_tokens=400))
        if self._shadow is not None:
            self._shadow.ask(prompt(findings), schema(findings), findings)  # judged against the same findings
        return draft

    def _message(self, report: StudyReport) -> CTReport:
        return report_to_ros(report, self.get_clock().now().to_msg())


def main(args: list[str] | None = None) -> int:
    return run_node(CtReportNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
