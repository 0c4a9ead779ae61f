"""The medicine's report drafts as `tango2_msgs/CTReport`."""
from __future__ import annotations

import math

from tango2_msgs.msg import CTFinding, CTReport
from tango2_ros.sdm.pipeline import StudyReport


def report_to_ros(report: StudyReport, stamp) -> CTReport:
    """A draft stamped `stamp` (builtin_interfaces/Time); a label the model does not assess has probability NaN."""
    message = CTReport(
        study_key=report.study_key, findings_text=report.draft.findings_text, impression=report.draft.impression,
        findings_model=report.findings_model, report_model=report.draft.model, disclaimer=report.disclaimer,
        latency_s=float(sum(report.seconds.values())),
        findings=[CTFinding(label=f.label, probability=math.nan if f.probability is None else f.probability,
                            threshold=f.threshold, present=f.present) for f in report.findings])
    message.header.stamp = stamp
    return message
