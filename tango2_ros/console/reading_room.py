"""The console's reading room: the PACS sign-off (tango2_ros.sdm.signoff) with its failures as console answers."""
from __future__ import annotations

from contextlib import contextmanager

from tango2_ros.console.server import BackendError, ConsoleError
from tango2_ros.sdm.pacs import PacsError
from tango2_ros.sdm.signoff import NotADraft, SignOff


@contextmanager
def _answers():
    try:
        yield
    except LookupError as exc:
        raise ConsoleError(404, "not_found", str(exc)) from None
    except NotADraft as exc:
        raise ConsoleError(409, "conflict", str(exc)) from None
    except PacsError as exc:
        raise BackendError(str(exc)) from None


class PacsReadingRoom:
    def __init__(self, signoff: SignOff) -> None:
        self.signoff = signoff

    def worklist(self) -> list[dict]:
        with _answers():
            return self.signoff.worklist()

    def study(self, study_uid: str, sr_uid: str) -> dict:
        with _answers():
            return self.signoff.study(study_uid, sr_uid)

    def slice_png(self, study_uid: str, series_uid: str, instance_uid: str) -> bytes:
        with _answers():
            return self.signoff.slice_png(study_uid, series_uid, instance_uid)

    def sign(self, study_uid: str, sr_uid: str, findings_text: str, impression: str, signer: str) -> dict:
        with _answers():
            return self.signoff.sign(study_uid, sr_uid, findings_text, impression, signer)
