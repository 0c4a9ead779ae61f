"use strict";
// The TANGO2 operator console: one page, no external assets. What it shows arrives over the WebSocket
// /api/live; what it does goes to the JSON API with the session's CSRF token. The server checks every role.

const state = { who: null, t: {}, live: {}, socket: null, tab: null, study: null };
const $ = (id) => document.getElementById(id);
const ROLE_COLOURS = { "give-way": "#c62828", "stand-on": "#ef6c00", "": "#1565c0" };

function t(key) { return state.t[key] || key; }

async function loadTexts(language) {
  const answer = await fetch(`/api/texts?lang=${encodeURIComponent(language)}`);
  state.t = await answer.json();
  document.documentElement.lang = language;
  document.title = t("title");
  document.querySelectorAll("[data-t]").forEach((e) => { e.textContent = t(e.dataset.t); });
  document.querySelectorAll("[data-tp]").forEach((e) => { e.placeholder = t(e.dataset.tp); });
}

async function api(method, path, body) {
  const options = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.headers["X-CSRF-Token"] = state.who ? state.who.csrf : "";
    options.body = JSON.stringify(body);
  }
  const answer = await fetch(path, options);
  const json = (answer.headers.get("Content-Type") || "").startsWith("application/json") ? await answer.json() : null;
  if (!answer.ok) {
    const error = new Error(json ? `${json.message} ${json.detail || ""}`.trim() : `${answer.status}`);
    error.status = answer.status;
    throw error;
  }
  return json;
}

function cell(row, value, className) {
  const td = row.insertCell();
  td.textContent = value === undefined || value === null ? "" : String(value);
  if (className) td.className = className;
  return td;
}

function clearBody(table) {
  const body = table.tBodies[0];
  while (body.rows.length) body.deleteRow(0);
  return body;
}

// -- signing in ------------------------------------------------------------------------------------------------
async function start() {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  document.querySelectorAll("nav button").forEach((b) => b.addEventListener("click", () => showTab(b.dataset.tab)));
  $("ask-form").addEventListener("submit", ask);
  $("estop").addEventListener("click", () => emergencyStop(true));
  $("estop-release").addEventListener("click", () => emergencyStop(false));
  $("sign").addEventListener("click", sign);
  try {
    signedIn(await api("GET", "/api/session"));
  } catch (error) {
    await loadTexts((navigator.language || "en").startsWith("ko") ? "ko" : "en");
  }
}

async function login(event) {
  event.preventDefault();
  $("login-error").textContent = "";
  try {
    signedIn(await api("POST", "/api/login", { user: $("login-user").value, password: $("login-password").value }));
  } catch (error) {
    $("login-error").textContent = error.message;
  }
}

async function logout() {
  try { await api("POST", "/api/logout", {}); } catch (error) { /* the session may have expired already */ }
  location.reload();
}

async function signedIn(who) {
  state.who = who;
  await loadTexts(who.language);
  $("login").hidden = true;
  $("tabs").hidden = false;
  $("logout").hidden = false;
  $("who").textContent = `${t("signed_in_as")} ${who.display_name} (${who.role})`;
  document.querySelectorAll("nav button").forEach((b) => {
    b.hidden = b.dataset.tab !== "models" && !who.channels.includes(b.dataset.tab);
  });
  $("estop-release").disabled = !who.may.includes("estop-release");
  connect();
  showTab(location.hash.slice(1) || "ship");
}

function showTab(tab) {
  if (!state.who.channels.includes(tab)) tab = "ship";
  state.tab = tab;
  location.hash = tab;
  document.querySelectorAll(".page").forEach((p) => { p.hidden = p.id !== `page-${tab}`; });
  document.querySelectorAll("nav button").forEach((b) => b.classList.toggle("active", b.dataset.tab === tab));
  if (tab === "models") refreshModels();
  if (tab === "medicine") refreshWorklist();
  render(tab);
}

// -- the live feed ---------------------------------------------------------------------------------------------
function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/api/live`);
  state.socket = socket;
  socket.onopen = () => { $("link").textContent = t("connected"); $("link").className = "link live"; };
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    state.live[message.channel] = message.data;
    if (message.channel === "models" && state.tab === "models") refreshModels();
    if (message.channel === "medicine" && state.tab === "medicine") refreshWorklist();
    if (message.channel === state.tab) render(state.tab);
  };
  socket.onclose = () => {
    $("link").textContent = t("disconnected");
    $("link").className = "link down";
    setTimeout(async () => {
      try { await api("GET", "/api/session"); connect(); } catch (error) { location.reload(); }
    }, 2000);
  };
}

function render(tab) {
  const data = state.live[tab];
  if (!data) return;
  if (tab === "ship") renderShip(data);
  if (tab === "farm") renderFarm(data);
}

// -- ship ------------------------------------------------------------------------------------------------------
function roleOf(decision, id) {
  const assessment = ((decision && decision.assessments) || []).find((a) => a.target_id === id);
  return assessment ? assessment.role : "";
}

function renderShip(ship) {
  drawChart(ship);
  const decision = ship.decision || {};
  $("decision-state").textContent = decision.state || t("no_picture");
  $("decision-rules").textContent = (decision.rules || []).join(", ");
  $("decision-rationale").textContent = decision.rationale || decision.status_reason || "";
  const descriptions = ship.descriptions || {};  // the account's language first, else what the ship describes in
  const description = descriptions[state.who.language] || Object.values(descriptions)[0] || {};
  $("description").textContent = description.text || "";
  $("description-model").textContent = description.model ? `${t("model")}: ${description.model}` : "";
  const body = clearBody($("targets"));
  for (const target of ship.targets || []) {
    const row = body.insertRow();
    row.dataset.id = target.id;
    cell(row, target.name ? `${target.id} ${target.name}` : target.id);
    cell(row, roleOf(decision, target.id));
    cell(row, `${(target.range_m / 1852).toFixed(2)} NM`);
    cell(row, `${target.bearing_deg.toFixed(0)}°`);
    cell(row, `${(target.cpa_m / 1852).toFixed(2)} NM`);
    cell(row, target.tcpa_s > 0 ? `${(target.tcpa_s / 60).toFixed(1)} min` : "-");
    cell(row, `${target.course_deg.toFixed(0)}°`);
    cell(row, `${target.speed_kn.toFixed(1)} kn`);
  }
}

function drawChart(ship) {
  const canvas = $("chart");
  const g = canvas.getContext("2d");
  const size = canvas.width, middle = size / 2;
  const farthest = Math.max(1852, ...(ship.targets || []).map((x) => x.range_m));
  const scale = (middle - 20) / (Math.ceil(farthest / 1852) * 1852);  // pixels per metre, whole NM rings
  const at = (north, east) => [middle + east * scale, middle - north * scale];
  g.clearRect(0, 0, size, size);
  g.strokeStyle = "#cfd8dc";
  g.fillStyle = "#546e7a";
  g.font = "11px sans-serif";
  for (let nm = 1; nm * 1852 * scale < middle; nm++) {
    g.beginPath();
    g.arc(middle, middle, nm * 1852 * scale, 0, 2 * Math.PI);
    g.stroke();
    g.fillText(`${nm} NM`, middle + 3, middle - nm * 1852 * scale - 3);
  }
  const own = ship.own_ship || {};
  arrow(g, middle, middle, own.course_deg || 0, (own.speed_kn || 0) * 1852 / 10 * scale, "#1b2631");
  for (const target of ship.targets || []) {
    const colour = ROLE_COLOURS[roleOf(ship.decision, target.id)] || ROLE_COLOURS[""];
    const [x, y] = at(target.north_m, target.east_m);
    const minutes = 6, metres = target.speed_kn * 1852 / 60 * minutes;  // predicted track: 6 minutes ahead
    arrow(g, x, y, target.course_deg, metres * scale, colour);
    if (target.tcpa_s > 0) {  // the line of closest approach, from own ship's position then to the target's then
      const rad = (d) => d * Math.PI / 180, hours = target.tcpa_s / 3600;
      const tn = target.north_m + Math.cos(rad(target.course_deg)) * target.speed_kn * 1852 * hours;
      const te = target.east_m + Math.sin(rad(target.course_deg)) * target.speed_kn * 1852 * hours;
      const on = Math.cos(rad(own.course_deg || 0)) * (own.speed_kn || 0) * 1852 * hours;
      const oe = Math.sin(rad(own.course_deg || 0)) * (own.speed_kn || 0) * 1852 * hours;
      g.setLineDash([4, 4]);
      g.strokeStyle = colour;
      g.beginPath();
      g.moveTo(...at(on, oe));
      g.lineTo(...at(tn, te));
      g.stroke();
      g.setLineDash([]);
    }
    g.fillStyle = colour;
    g.beginPath();
    g.arc(x, y, 5, 0, 2 * Math.PI);
    g.fill();
    g.fillText(target.name || target.id, x + 7, y - 7);
  }
}

function arrow(g, x, y, courseDeg, length, colour) {
  const rad = courseDeg * Math.PI / 180;
  g.strokeStyle = colour;
  g.lineWidth = 2;
  g.beginPath();
  g.moveTo(x, y);
  g.lineTo(x + Math.sin(rad) * length, y - Math.cos(rad) * length);
  g.stroke();
  g.lineWidth = 1;
}

async function ask(event) {
  event.preventDefault();
  $("ask-answer").textContent = "…";
  try {
    const answer = await api("POST", "/api/ship/ask", { question: $("ask-question").value });
    $("ask-answer").textContent = answer.answer || answer.error;
  } catch (error) {
    $("ask-answer").textContent = error.message;
  }
}

// -- farm ------------------------------------------------------------------------------------------------------
function renderFarm(farm) {
  $("estop-banner").hidden = !farm.emergency_stop;
  const history = farm.history || [];
  const bands = farm.bands || {};
  for (const name of ["temperature", "humidity", "co2"]) plot($(`plot-${name}`), history.map((p) => p[name]), bands[name]);
  const actuators = clearBody($("actuators"));
  for (const [name, value] of Object.entries((farm.state || {}).actuators || {})) {
    const row = actuators.insertRow();
    cell(row, name);
    cell(row, typeof value === "boolean" ? (value ? "on" : "off") : `${value.toFixed(0)} %`);
  }
  const proposals = clearBody($("proposals"));
  for (const proposal of [...(farm.proposals || [])].reverse()) {
    const row = proposals.insertRow();
    cell(row, proposal.sequence);
    cell(row, proposal.model ? `${proposal.controller} (${proposal.model})` : proposal.controller);
    cell(row, t(`verdict_${proposal.verdict}`), `verdict-${proposal.verdict}`);
    cell(row, (proposal.reasons || []).join("; "));
    cell(row, proposal.rationale);
  }
}

function plot(canvas, values, band) {
  const g = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  g.clearRect(0, 0, w, h);
  const finite = values.filter((v) => Number.isFinite(v));
  if (!finite.length) return;
  let low = Math.min(...finite), high = Math.max(...finite);
  if (band) { low = Math.min(low, band[0]); high = Math.max(high, band[1]); }
  const pad = (high - low) * 0.1 || 1;
  low -= pad; high += pad;
  const y = (v) => h - (v - low) / (high - low) * h;
  if (band) {
    g.fillStyle = "rgba(129, 199, 132, 0.25)";
    g.fillRect(0, y(band[1]), w, y(band[0]) - y(band[1]));
  }
  g.strokeStyle = "#1565c0";
  g.beginPath();
  values.forEach((v, i) => {
    if (!Number.isFinite(v)) return;
    const x = values.length > 1 ? i / (values.length - 1) * w : w / 2;
    if (i === 0) g.moveTo(x, y(v)); else g.lineTo(x, y(v));
  });
  g.stroke();
  g.fillStyle = "#546e7a";
  g.fillText(finite[finite.length - 1].toFixed(1), w - 40, 12);
}

async function emergencyStop(engaged) {
  $("farm-message").textContent = "";
  try {
    await api("POST", "/api/farm/estop", { engaged });
  } catch (error) {
    $("farm-message").textContent = error.message;
  }
}

// -- medicine --------------------------------------------------------------------------------------------------
async function refreshWorklist() {
  const body = clearBody($("worklist"));
  let drafts = [];
  try {
    drafts = (await api("GET", "/api/medicine/worklist")).drafts;
  } catch (error) {
    cell(body.insertRow(), error.message, "error");
    return;
  }
  if (!drafts.length) cell(body.insertRow(), t("no_drafts"));
  for (const draft of drafts) {
    const row = body.insertRow();
    cell(row, draft.study_key);
    const button = document.createElement("button");
    button.textContent = t("open");
    button.addEventListener("click", () => openStudy(draft));
    row.insertCell().appendChild(button);
  }
}

async function openStudy(draft) {
  const study = await api("GET", `/api/medicine/study?study=${draft.study}&sr=${draft.sr}`);
  state.study = study;
  $("study").hidden = false;
  $("study-key").textContent = study.study_key;
  $("findings-text").value = study.findings_text;
  $("impression").value = study.impression;
  $("study-comment").textContent = study.comment;
  $("sign-message").textContent = "";
  const slices = $("slices");
  slices.replaceChildren(...study.slices.map((s) => {
    const img = document.createElement("img");
    img.src = `/api/medicine/slice?study=${study.study}&series=${s.series}&instance=${s.instance}`;
    img.alt = `${s.position} / ${s.of}`;
    return img;
  }));
  const body = clearBody($("study-findings"));
  for (const finding of study.findings) {
    const row = body.insertRow();
    cell(row, finding.label);
    cell(row, t(finding.present ? "present" : "absent"));
    cell(row, finding.probability === null ? "" : finding.probability.toFixed(2));
  }
}

async function sign() {
  const study = state.study;
  try {
    await api("POST", "/api/medicine/sign", { study: study.study, sr: study.sr,
      findings_text: $("findings-text").value, impression: $("impression").value });
    $("sign-message").textContent = t("signed");
    $("sign-message").className = "ok";
    refreshWorklist();
  } catch (error) {
    $("sign-message").textContent = error.message;
    $("sign-message").className = "error";
  }
}

// -- models ----------------------------------------------------------------------------------------------------
async function refreshModels() {
  let slots = [];
  try {
    slots = (await api("GET", "/api/models")).slots;
  } catch (error) {
    $("models-message").textContent = error.message;
    return;
  }
  const body = clearBody($("models"));
  for (const slot of slots) {
    const row = body.insertRow();
    row.dataset.slot = slot.slot;
    cell(row, slot.slot);
    cell(row, slot.model);
    cell(row, slot.active_version);
    cell(row, slot.state);
    cell(row, slot.event);
    cell(row, shadowSummary(slot.shadow));
    const choose = document.createElement("select");
    for (const version of slot.versions) choose.add(new Option(version, version, false, version === slot.active_version));
    row.insertCell().appendChild(choose);
    const actions = row.insertCell();
    const swap = document.createElement("button");
    swap.textContent = t("swap");
    swap.className = "swap";
    swap.addEventListener("click", () => changeModel("/api/models/swap", { slot: slot.slot, version: choose.value }));
    const rollback = document.createElement("button");
    rollback.textContent = t("rollback");
    rollback.addEventListener("click", () => changeModel("/api/models/rollback", { slot: slot.slot }));
    for (const button of [swap, rollback]) {
      button.disabled = !state.who.may.includes("swap");
      actions.appendChild(button);
    }
  }
}

function shadowSummary(score) {
  if (!score) return "";
  const verdict = score.promoted ? t("promoted") : score.retired || t("watching");
  return `${score.decisions} ${t("decisions")}, ${score.agreement_pct} % ${t("agreed")}, ` +
    `${score.supervisor_rejections} ${t("refused")}; ${verdict}`;
}

async function changeModel(path, body) {
  $("models-message").textContent = "…";
  try {
    const answer = await api("POST", path, body);
    $("models-message").textContent = answer.message;
    $("models-message").className = "ok";
  } catch (error) {
    $("models-message").textContent = error.message;
    $("models-message").className = "error";
  }
  refreshModels();
}

start();
