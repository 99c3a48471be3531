"use strict";
// Messages reach the room at once; moderation runs beside the chat and may remove one later
// ("message removed"). In rooms that hold messages until moderated, the sender sees theirs
// as pending, then delivered or not delivered. Scores show only in the debug view. Anyone's
// message but one's own can be reported to the reviewers.
let ws, room, me;
let sent = 0;
const log = document.getElementById("log");
const lines = new Map();      // message id → its line
const pending = new Map();    // client_msg_id → { line, text }
// Sends and reports awaiting their answer, oldest first: the gateway answers each frame in
// order (ack or reported, else an error frame, which names no message).
const outstanding = [];       // { kind: "send", clientId } or { kind: "report", div }
document.getElementById("debug").onchange = (e) => document.body.classList.toggle("show-debug", e.target.checked);
if (new URLSearchParams(location.search).has("debug")) {
  document.getElementById("debug").checked = true;
  document.body.classList.add("show-debug");
}

function system(text) {
  const div = document.createElement("div");
  div.className = "sys";
  div.textContent = text;
  append(div);
}

function append(node) {
  const bottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
  log.appendChild(node);
  if (bottom) log.scrollTop = log.scrollHeight;
}

// One message line: who, the text, when, and its state (for the sender).
function line(sender, text, at) {
  const div = document.createElement("div");
  div.className = "msg" + (sender === me ? " mine" : "");
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = sender;
  const body = document.createElement("span");
  body.className = "body";
  body.textContent = text;
  const time = document.createElement("time");
  const when = new Date(at);
  time.dateTime = when.toISOString();
  time.textContent = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const state = document.createElement("span");
  state.className = "state";
  const debug = document.createElement("span");
  debug.className = "debug";
  div.append(who, body, time, state, debug);
  if (sender !== me) div.append(reportButton(div));
  return div;
}

// "report": asks why (optional), then sends a `report` frame for the line's message.
function reportButton(div) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "report-button";
  button.textContent = "report";
  button.onclick = () => {
    const form = document.createElement("form");
    form.className = "report-form";
    const reason = document.createElement("input");
    reason.placeholder = "why? (optional)";
    reason.maxLength = 500;
    const send = document.createElement("button");
    send.textContent = "send report";
    form.append(reason, send);
    form.onsubmit = (e) => {
      e.preventDefault();
      ws.send(JSON.stringify({ type: "report", room, id: div.dataset.id, reason: reason.value }));
      outstanding.push({ kind: "report", div });
      form.remove();
      div.querySelector(".state").textContent = "reporting…";
    };
    button.replaceWith(form);
    reason.focus();
  };
  return button;
}

function answered(kind, match) {
  const at = outstanding.findIndex((o) => o.kind === kind && match(o));
  if (at >= 0) outstanding.splice(at, 1);
}

function onReported(f) {
  const div = lines.get(f.id);
  answered("report", (o) => o.div === div);
  if (div) div.querySelector(".state").textContent = "reported";
}

function setState(div, cls, label) {
  div.classList.remove("pending", "refused", "removed");
  if (cls) div.classList.add(cls);
  div.querySelector(".state").textContent = label || "";
}

function onMessage(f) {
  let div = lines.get(f.id);
  if (div) {
    // Shown again (a reviewer restored it), or the held message of this sender delivered.
    div.querySelector(".body").textContent = f.text;
    setState(div, "", div.classList.contains("mine") ? "delivered" : "");
    return;
  }
  div = line(f.sender, f.text, f.sent_at_ms);
  div.dataset.id = f.id;
  lines.set(f.id, div);
  append(div);
}

function onRetract(f) {
  const div = lines.get(f.id);
  if (!div) return;
  div.querySelector(".body").textContent = "message removed";
  setState(div, "removed", "");
}

function onAck(f) {
  answered("send", (o) => o.clientId === f.client_msg_id);
  const mine = pending.get(f.client_msg_id);
  if (!mine) return;
  pending.delete(f.client_msg_id);
  if (lines.has(f.id) || !f.held) {
    // The room's copy came first, or will come: it takes the placeholder's place.
    mine.line.remove();
    return;
  }
  mine.line.dataset.id = f.id;
  lines.set(f.id, mine.line);
  setState(mine.line, "pending", "pending moderation…");
}

function onVerdict(f) {
  const div = lines.get(f.id);
  if (!div) return;
  const scores = Object.entries(f.scores).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(", ");
  div.querySelector(".debug").textContent = `${f.action}${f.reason ? " (" + f.reason + ")" : ""} ${scores}`;
  if (div.classList.contains("pending") && (f.action === "block" || f.action === "unmoderated")) {
    setState(div, "refused", "not delivered");
  }
}

// An error frame answers the oldest send or report still waiting (the gateway answers
// frames in order; an error frame names no message).
function onError(f) {
  const oldest = outstanding.shift();
  const why = f.code.replace(/_/g, " ");
  if (oldest && oldest.kind === "report") {
    oldest.div.querySelector(".state").textContent = `not reported (${why})`;
    oldest.div.append(reportButton(oldest.div));
  } else if (oldest && pending.has(oldest.clientId)) {
    setState(pending.get(oldest.clientId).line, "refused", `not sent (${why})`);
    pending.delete(oldest.clientId);
  } else system(`error ${f.code}: ${f.message}`);
}

function subOf(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload)).sub;
  } catch (_) { return "?"; }
}

// A gateway with signed tokens takes one as ?access_token= (a browser cannot set headers on
// a websocket); `#token=<jwt>` in this page's address fills the field. Without a token the
// name is sent as ?user=, which only a gateway run with --insecure-dev-identity accepts.
const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
if (fromHash) {
  document.getElementById("token").value = fromHash;
  // Out of the address bar (and history, bookmarks, screen shares) once read.
  history.replaceState(null, "", location.pathname + location.search);
}

document.getElementById("join").onsubmit = (e) => {
  e.preventDefault();
  const token = document.getElementById("token").value.trim();
  me = token ? subOf(token) : document.getElementById("user").value;
  if (!me) return system("give a name or a token");
  room = document.getElementById("room").value;
  if (ws) ws.close();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const credential = token ? `access_token=${encodeURIComponent(token)}` : `user=${encodeURIComponent(me)}`;
  ws = new WebSocket(`${scheme}://${location.host}/ws?${credential}`);
  // A new room: a new log.
  log.replaceChildren();
  lines.clear();
  pending.clear();
  outstanding.length = 0;
  ws.onopen = () => ws.send(JSON.stringify({ type: "join", room }));
  ws.onclose = (e) => {
    system(`disconnected (${e.code} ${e.reason})`);
    for (const el of document.querySelectorAll("#send *")) el.disabled = true;
    for (const { line } of pending.values()) setState(line, "refused", "not sent (disconnected)");
    pending.clear();
    outstanding.length = 0;
  };
  ws.onmessage = (e) => {
    const f = JSON.parse(e.data);
    if (f.type === "message") onMessage(f);
    else if (f.type === "retract") onRetract(f);
    else if (f.type === "verdict") onVerdict(f);
    else if (f.type === "ack") onAck(f);
    else if (f.type === "reported") onReported(f);
    else if (f.type === "joined") {
      system(`joined ${f.room} as ${me}`);
      for (const el of document.querySelectorAll("#send *")) el.disabled = false;
    } else if (f.type === "error") onError(f);
  };
};

document.getElementById("send").onsubmit = (e) => {
  e.preventDefault();
  const input = document.getElementById("text");
  if (!input.value) return;
  const clientId = `c${++sent}`;
  // Shown to the sender at once; replaced by the room's copy, or kept as pending when held.
  const mine = line(me, input.value, Date.now());
  setState(mine, "pending", "sending…");
  pending.set(clientId, { line: mine, text: input.value });
  outstanding.push({ kind: "send", clientId });
  append(mine);
  ws.send(JSON.stringify({ type: "send", room, text: input.value, client_msg_id: clientId }));
  input.value = "";
};
