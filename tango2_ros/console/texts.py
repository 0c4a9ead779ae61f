"""Every word the console shows or answers, in English and Korean (the demonstrations' users are Korean).

One table for the page (sent by `/api/texts`) and for the server's error messages, so a missing translation is a
test failure (`test_console_http.py` checks that both languages have every key) rather than a blank on the page.
"""
from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "title": "TANGO2 operator console",
        "user": "Account", "password": "Password", "sign_in": "Sign in", "sign_out": "Sign out",
        "signed_in_as": "Signed in as", "connected": "live", "disconnected": "reconnecting",
        "tab_ship": "Ship", "tab_farm": "Farm", "tab_medicine": "Medicine", "tab_models": "Models",
        "own_ship": "Own ship", "targets": "Targets", "decision": "Decision", "rules": "Rules",
        "rationale": "Rationale", "description": "Situation", "ask": "Ask", "ask_placeholder":
            "Ask the bridge assistant, e.g. Which vessels must we give way to?",
        "no_picture": "No picture yet", "course": "Course", "speed": "Speed", "cpa": "CPA", "tcpa": "TCPA",
        "role": "Role", "range": "Range", "bearing": "Bearing",
        "climate": "Climate", "temperature": "Air temperature (°C)", "humidity": "Relative humidity (%)",
        "co2": "CO2 (ppm)", "band": "band", "actuators": "Actuators", "proposals": "Proposals and verdicts",
        "controller": "Controller", "verdict": "Verdict", "reasons": "Reasons",
        "verdict_0": "pending", "verdict_1": "accepted", "verdict_2": "clamped", "verdict_3": "rejected",
        "estop": "Emergency stop", "estop_release": "Release the emergency stop", "estop_engaged":
            "EMERGENCY STOP ENGAGED", "no_farm": "No greenhouse state yet",
        "worklist": "Draft reports", "no_drafts": "No draft waits for a radiologist", "open": "Open",
        "findings": "Findings", "impression": "Impression", "probability": "Probability", "present": "present",
        "absent": "absent", "sign": "Sign the report", "signed": "Signed: the verified report is in the PACS",
        "key_slices": "Key slices", "study": "Study", "model": "Model",
        "slot": "Slot", "active": "Active", "state": "State", "versions": "Available versions", "swap": "Swap",
        "rollback": "Roll back", "force": "Even during a hold", "event": "Last event",
        "audit": "Audit log", "shadow_score": "Candidate in shadow", "decisions": "decisions", "agreed": "agreed",
        "refused": "refused", "promoted": "promoted", "watching": "being judged",
        "err_no_session": "Sign in first.", "err_wrong_password": "Wrong account name or password.",
        "err_throttled": "Too many wrong passwords for this account: wait a few minutes.",
        "err_forbidden": "Your role may not do this.", "err_csrf": "The request lacks this session's CSRF token.",
        "err_origin": "Requests from another site are refused.", "err_bad_request": "The request is malformed.",
        "err_too_large": "The request is too large.", "err_not_found": "Nothing here.",
        "err_method": "This address does not take that method.", "err_json_only": "Send JSON (application/json).",
        "err_length": "Content-Length is required.", "err_unavailable": "Not available on this machine.",
        "err_failed": "It did not work.", "err_internal": "The console failed on this request; it keeps running.",
        "err_conflict": "That changed meanwhile.",
    },
    "ko": {
        "title": "TANGO2 운용 콘솔",
        "user": "계정", "password": "비밀번호", "sign_in": "로그인", "sign_out": "로그아웃",
        "signed_in_as": "로그인 사용자", "connected": "실시간", "disconnected": "다시 연결 중",
        "tab_ship": "선박", "tab_farm": "농장", "tab_medicine": "의료", "tab_models": "모델",
        "own_ship": "자선", "targets": "타선", "decision": "판단", "rules": "규칙",
        "rationale": "근거", "description": "상황", "ask": "질문", "ask_placeholder":
            "항해 보조에게 질문하세요. 예: 어느 선박을 피해야 합니까?",
        "no_picture": "아직 상황 정보가 없습니다", "course": "침로", "speed": "속력", "cpa": "CPA", "tcpa": "TCPA",
        "role": "역할", "range": "거리", "bearing": "방위",
        "climate": "기후", "temperature": "기온 (°C)", "humidity": "상대 습도 (%)",
        "co2": "CO2 (ppm)", "band": "목표 범위", "actuators": "구동기", "proposals": "제안과 판정",
        "controller": "제어기", "verdict": "판정", "reasons": "사유",
        "verdict_0": "대기", "verdict_1": "승인", "verdict_2": "제한 승인", "verdict_3": "거부",
        "estop": "비상 정지", "estop_release": "비상 정지 해제", "estop_engaged": "비상 정지 중",
        "no_farm": "아직 온실 상태가 없습니다",
        "worklist": "판독문 초안", "no_drafts": "판독을 기다리는 초안이 없습니다", "open": "열기",
        "findings": "소견", "impression": "결론", "probability": "확률", "present": "있음",
        "absent": "없음", "sign": "판독문 서명", "signed": "서명됨: 확인된 판독문이 PACS에 있습니다",
        "key_slices": "주요 단면", "study": "검사", "model": "모델",
        "slot": "슬롯", "active": "사용 중", "state": "상태", "versions": "사용 가능한 버전", "swap": "교체",
        "rollback": "되돌리기", "force": "보류 중에도", "event": "최근 사건",
        "audit": "감사 기록", "shadow_score": "섀도 평가 중인 후보", "decisions": "건 판단", "agreed": "일치",
        "refused": "거부", "promoted": "승격됨", "watching": "평가 중",
        "err_no_session": "먼저 로그인하세요.", "err_wrong_password": "계정 이름 또는 비밀번호가 틀렸습니다.",
        "err_throttled": "이 계정의 비밀번호가 여러 번 틀렸습니다. 몇 분 뒤에 다시 시도하세요.",
        "err_forbidden": "이 역할로는 할 수 없는 작업입니다.", "err_csrf": "요청에 이 세션의 CSRF 토큰이 없습니다.",
        "err_origin": "다른 사이트에서 온 요청은 거부됩니다.", "err_bad_request": "요청 형식이 잘못되었습니다.",
        "err_too_large": "요청이 너무 큽니다.", "err_not_found": "없는 주소입니다.",
        "err_method": "이 주소는 그 방식을 받지 않습니다.", "err_json_only": "JSON(application/json)으로 보내세요.",
        "err_length": "Content-Length가 필요합니다.", "err_unavailable": "이 장비에서는 사용할 수 없습니다.",
        "err_failed": "실패했습니다.", "err_internal": "콘솔이 이 요청을 처리하지 못했습니다. 콘솔은 계속 동작합니다.",
        "err_conflict": "그 사이에 바뀌었습니다.",
    },
}


def text(language: str, key: str) -> str:
    return TEXTS.get(language, TEXTS["en"]).get(key, TEXTS["en"][key])
