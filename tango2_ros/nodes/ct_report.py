"""ct_report: chest-CT studies in from the PACS, draft reports out (software-defined medicine).

Studies arrive two ways: a DICOM C-STORE receiver (`dicom_port`, accepting only the `allowed_aets` callers,
CT image storage only) and the `ReportCT` action (`sdm/report_ct`, so /tango2/sdm/report_ct in the profile's
namespace: a series folder, a .nii.gz/.mha file, or the key of a study received earlier), with stage/progress
feedback. One worker thread runs each study
through tango2_ros.sdm.pipeline: findings model (ONNX, `findings_model`; swapped at run time through
`~/load_model` by the model manager) -> report text from the llm_node (`llm_action`, Generate with the
findings' JSON Schema; empty = standard wording) -> `CTReport` on `sdm/report`. With `pacs_dicomweb`
set, the draft goes back to the PACS as a DICOM Comprehensive SR over STOW-RS (when the PACS cannot take it, the
SR waits as a file in `sr_outbox` and is sent again after the next successful store); with `fhir_dir`, a FHIR
DiagnosticReport is written there (to a temporary name, then renamed, so readers never see half a file).

Logs and topics carry only a de-identified study key (a salted hash of the Study Instance UID), never names,
IDs or UIDs. A bad study (not CT, too few slices, missing slices, undecodable pixels, over the size limit) fails
that study with its reason on /diagnostics and in the action result; nothing is sent to the PACS for it.
"""
from __future__ import annotations

from rclpy.action import ActionServer, GoalResponse

from tango2_msgs.action import ReportCT
from tango2_msgs.msg import CTReport
from tango2_ros.core.runtime.base import ModelLoadError, NoModelError
from tango2_ros.core.runtime.serving import ModelSpec
from tango2_ros.errors import UserError
from tango2_ros.nodes.base import ERROR, OK, WARN, Tango2Node, run_node
from tango2_ros.nodes.serving import ModelService
from tango2_ros.ros.conversions.medicine import report_to_ros
from tango2_ros.ros.llm_client import LlmClient
from tango2_ros.sdm.findings import Finding, FindingsModel
from tango2_ros.sdm.outputs import Destinations, ReportDelivery
from tango2_ros.sdm.pipeline import ReportPipeline, StudyReport
from tango2_ros.sdm.report import Draft, prompt, schema, template_draft, written_draft
from tango2_ros.sdm.volume import StudyLimits
from tango2_ros.sdm.worker import StudyWorker


class CtReportNode(Tango2Node):
    def __init__(self) -> None:
        super().__init__("ct_report")
        self.declare("findings_model", "", "ONNX findings model with tango2.ct_findings metadata; empty = none until "
                     "the model manager deploys one through ~/load_model.")
        self.declare("llm_action", "/tango2/llm/generate", "Generate action of the llm_node; empty = standard wording.")
        self.declare("llm_timeout_s", 120.0, "Give up on the language model after this; standard wording then.",
                     min_value=1.0, max_value=3600.0)
        self.declare("dicom_port", 0, "C-STORE receiver port; 0 = no receiver.", min_value=0, max_value=65535)
        self.declare("dicom_address", "127.0.0.1", "Address the receiver listens on.")
        self.declare("ae_title", "TANGO2SDM", "The receiver's AE title.")
        self.declare("allowed_aets", ["SCANNER"], "Calling AE titles the receiver accepts.")
        self.declare_settings(Destinations)
        self.declare("study_salt", "tango2", "Salt of the de-identified study key.")
        self.declare_settings(StudyLimits)
        self.declare("health_budget_s", 30.0, "A new findings model must read a blank volume within this.",
                     min_value=0.1, max_value=600.0)
        self.model = ModelService(self, lambda spec, _beside: FindingsModel(spec.path, name=spec.name,
                                                                            version=spec.version),
                                  default_budget_s=lambda: self.param("health_budget_s"))
        self._worker = StudyWorker(self._process, self._on_failure)
        self._counts = {"studies": 0, "failed": 0}
        self._delivery = ReportDelivery()
        self._receiver = self._llm = self._action = self._publisher = None
        self._active = False

    def executor_threads(self) -> int:
        return 4

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def configure(self) -> None:
        if self.param("findings_model"):
            loaded = self.model.load(ModelSpec(self.param("findings_model")))
            if not loaded.success:
                raise ModelLoadError(loaded.message)
        self.model.start()
        self._publisher = self.create_lifecycle_publisher(CTReport, "sdm/report", 10)
        if self.param("llm_action"):
            self._llm = LlmClient(self, self.param("llm_action"), callback_group=self.coroutine_group)
        self._delivery = ReportDelivery(self.settings(Destinations))
        self._action = ActionServer(self, ReportCT, "sdm/report_ct", execute_callback=self._execute,
                                    goal_callback=self._accept_goal, callback_group=self.coroutine_group)
        self._worker.start()
        self.set_status(WARN, "configured, not receiving", model=self._model_label(), **self._all_counts())

    def activate(self) -> None:
        if self.param("dicom_port"):
            from tango2_ros.sdm.pacs import StoreReceiver

            self._receiver = StoreReceiver(self._on_series, ae_title=self.param("ae_title"),
                                           port=self.param("dicom_port"), address=self.param("dicom_address"),
                                           allowed_aets=tuple(self.param("allowed_aets")),
                                           max_bytes=int(self.param("max_voxels") * 2.5)).start()
        self._active = True
        if not self._model_label():
            self.set_status(WARN, "ready, waiting for a findings model (~/load_model)")
        else:
            self.set_status(OK, "ready", model=self._model_label())

    def deactivate(self) -> None:
        self._active = False
        if self._receiver is not None:
            self._receiver.stop()
            self._receiver = None

    def cleanup(self) -> None:
        self.deactivate()
        self._worker.stop()
        for entity in (self._action, self._llm):
            if entity is not None:
                entity.destroy()
        if self._publisher is not None:
            self.destroy_lifecycle_publisher(self._publisher)
        self._action = self._llm = self._publisher = None
        self._delivery = ReportDelivery()
        self.model.stop()

    # -- inputs ------------------------------------------------------------------------------------------------
    def _on_series(self, datasets: list, calling_aet: str) -> None:
        self._worker.submit_series(datasets, self.settings(StudyLimits), calling_aet)

    def _accept_goal(self, goal: ReportCT.Goal) -> GoalResponse:
        return GoalResponse.ACCEPT if self._active and (goal.study_path or goal.study_key) else GoalResponse.REJECT

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
    def _model_label(self) -> str:
        return self.model.served.label

    def _process(self, source, feedback) -> StudyReport:
        try:
            with self.model.served.slot.lease() as model:
                pipeline = ReportPipeline(model, self._write, self.settings(StudyLimits), self.param("study_salt"))
                report = pipeline.run(source, feedback)
        except NoModelError:
            raise UserError("no findings model is loaded yet (the model manager deploys one through ~/load_model)") \
                from None
        self.model.count(model.label, False)
        feedback("storing", 0.8)
        problem = self._delivery.deliver(report)
        self._counts["studies"] += 1
        self._publisher.publish(self._message(report))
        counts = self._all_counts()  # the outbox is counted on disk: once per study
        if problem:
            self.set_status(ERROR, problem, model=model.label, **counts)
        elif self.status[0] == ERROR and counts["sr_waiting"]:
            self.set_values(model=model.label, **counts)  # the PACS problem stays visible until sent
        else:
            self.set_status(WARN if report.draft.corrections else OK, report.summary(), model=model.label, **counts)
        feedback("storing", 1.0)
        return report

    def _all_counts(self) -> dict[str, int]:
        return {**self._counts, **self._delivery.counts}

    def _on_failure(self, message: str, unexpected: bool) -> None:
        if unexpected:
            self.model.count(self._model_label(), True)
        self._counts["failed"] += 1
        self.set_status(ERROR, message, **self._all_counts())

    def _write(self, findings: list[Finding]) -> Draft:
        """The llm_node writes; on no server, a refusal, an error or a timeout the standard wording does."""
        if self._llm is None:
            return template_draft(findings)
        answer = self._llm.ask_and_wait(timeout_s=self.param("llm_timeout_s"), user=prompt(findings),
                                        schema=schema(findings), max_tokens=400)
        return written_draft(findings, answer.text, answer.model, answer.error)

    def _message(self, report: StudyReport) -> CTReport:
        message = report_to_ros(report)
        message.header.stamp = self.get_clock().now().to_msg()
        return message


def main(args: list[str] | None = None) -> int:
    return run_node(CtReportNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
