"use strict";
// Messages reach the room at once; moderation runs beside the chat and may remove one later
// ("message removed"). In rooms that hold messages until moderated (the gateway says so in
// its `joined` frame), the sender sees theirs as pending, then delivered or not delivered.
// The sender alone is told why a message of theirs was removed or not delivered (its
// `verdict` frame goes to the sending connection only). Scores show only in the debug view.
// Anyone's message but one's own can be reported to the reviewers.
// Connecting (the check before, reconnecting after) is connect.js's.
let ws = null;        // the open socket, if any; frames of any other are ignored
let room, me, credential, joining = false;
let maxTextBytes = 4096;  // until the gateway's `joined` frame says
let roomPolicy = { mode: "post", failure: "fail_open" };
let attempt = 0, retryTimer = null, generation = 0;
let sent = 0;
const $ = (id) => document.getElementById(id);
const log = $("log");
const lines = new Map();      // message id → its line
const pending = new Map();    // client_msg_id → { line, text }
const said = new WeakMap();   // line → the text it showed (a verdict's span is a part of it)
// Sends and reports awaiting their answer, oldest first: the gateway answers each frame in
// order (ack or reported, else an error frame, which names no message).
const outstanding = [];       // { kind: "send", clientId } or { kind: "report", div }
// The gateway's rule for room names (and development-identity names): 1–64 bytes of these.
const NAME_RULE = /^[A-Za-z0-9_:@=+~-]{1,64}$/;

$("debug").onchange = (e) => document.body.classList.toggle("show-debug", e.target.checked);
if (new URLSearchParams(location.search).has("debug")) {
  $("debug").checked = true;
  document.body.classList.add("show-debug");
}

function status(text, error) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
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
  body.dir = "auto";
  body.textContent = text;
  said.set(div, text);
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
    reason.setAttribute("aria-label", "Why report this message? (optional)");
    reason.maxLength = 500;
    const send = document.createElement("button");
    send.textContent = "send report";
    form.append(reason, send);
    form.onsubmit = (e) => {
      e.preventDefault();
      if (!ws) return;
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

// A note under the sender's own line: why it was removed or not delivered.
function notice(div, text) {
  let note = div.querySelector(".notice");
  if (!text) return note && note.remove();
  if (!note) {
    note = document.createElement("div");
    note.className = "notice";
    div.append(note);
  }
  note.textContent = text;
}

function onMessage(f) {
  let div = lines.get(f.id);
  if (div) {
    // Shown again (a reviewer restored it), or the held message of this sender delivered.
    div.querySelector(".body").textContent = f.text;
    said.set(div, f.text);
    setState(div, "", div.classList.contains("mine") ? "delivered" : "");
    notice(div, "");
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

// Why moderation took a message away, in words: " by a reviewer", or the category that
// decided (the verdict's `category`; from an older moderator, the label scored highest) and
// the words it was about (the verdict's `span`, when the moderator could tell), or why no
// verdict came.
function because(f, text) {
  if (f.reason === "removed") return " by a reviewer";
  const part = f.action === "block" ? partOf(text, f.span) : "";
  return `: ${label(f)}${part ? ` for "${part}"` : ""}`;
}

// The part of `text` a verdict's span names (bytes of its UTF-8 encoding), or "" when the
// span is not a part of it on character boundaries (a verdict is data, not trusted to fit).
function partOf(text, span) {
  if (!span || typeof text !== "string" || !Number.isFinite(span.score)) return "";
  const bytes = new TextEncoder().encode(text);
  if (!(span.start >= 0 && span.start < span.end && span.end <= bytes.length)) return "";
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(span.start, span.end)).trim();
  } catch {
    return "";
  }
}

function label(f) {
  if (f.action === "block") {
    const [top] = Object.entries(f.scores || {}).sort((a, b) => b[1] - a[1])[0] || [];
    const why = f.category || top;
    return why ? why.replace(/_/g, " ") : "moderation blocked it";
  }
  return f.reason === "hold_deadline" ? "moderation did not answer in time" : "moderation could not check it";
}

function onVerdict(f) {
  const div = lines.get(f.id);
  if (!div) return;
  const scores = Object.entries(f.scores || {}).map(([k, v]) => `${k} ${v.toFixed(2)}`).join(", ");
  const why = f.reason || f.category;
  const part = partOf(said.get(div), f.span);
  div.querySelector(".debug").textContent = `${f.action}${why ? " (" + why + ")" : ""} ${scores}` +
    (part ? ` span "${part}" ${f.span.score.toFixed(2)}` : "");
  const goes = f.action === "block" || (f.action === "unmoderated" && roomPolicy.failure === "fail_closed");
  if (!goes) return;
  if (div.classList.contains("pending")) {
    setState(div, "refused", "not delivered");
    notice(div, `not delivered${because(f, said.get(div))} — only you see this`);
  } else {
    notice(div, `removed${because(f, said.get(div))} — only you see this`);
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

// The gateway's answer to `join`: the room's policy, its text limit and its latest messages.
function onJoined(f) {
  attempt = 0;
  if (f.max_text_bytes) maxTextBytes = f.max_text_bytes;
  roomPolicy = { mode: f.policy || "post", failure: f.failure || "fail_open" };
  const history = (f.history || []).filter((m) => !lines.has(m.id));
  if (history.length) system(`${history.length} earlier message${history.length > 1 ? "s" : ""}`);
  for (const m of history) onMessage(m);
  system(`joined ${f.room} as ${me}`);
  if (roomPolicy.mode === "hold") {
    system("This room is pre-moderated: a message appears once moderation allows it.");
  }
  status("");
  for (const el of document.querySelectorAll("#send input, #send button")) el.disabled = false;
  if (joining) $("text").focus();
  joining = false;
}

function onFrame(f) {
  if (f.type === "message") onMessage(f);
  else if (f.type === "retract") onRetract(f);
  else if (f.type === "verdict") onVerdict(f);
  else if (f.type === "ack") onAck(f);
  else if (f.type === "reported") onReported(f);
  else if (f.type === "joined") onJoined(f);
  else if (f.type === "error") onError(f);
}

function disableSend() {
  for (const el of document.querySelectorAll("#send input, #send button")) el.disabled = true;
  for (const { line } of pending.values()) setState(line, "refused", "not sent (disconnected)");
  pending.clear();
  outstanding.length = 0;
}

// A gateway with signed tokens takes one as ?access_token= (a browser cannot set headers on
// a websocket); `#token=<jwt>` in this page's address fills the field. Without a token the
// name is sent as ?user=, which only a gateway run with --insecure-dev-identity accepts.
const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
if (fromHash) {
  $("token").value = fromHash;
  // Out of the address bar (and history, bookmarks, screen shares) once read.
  history.replaceState(null, "", location.pathname + location.search);
}

$("join").onsubmit = (e) => {
  e.preventDefault();
  const token = $("token").value.trim();
  const user = $("user").value.trim();
  if (!token && !user) {
    status("Type a name, or paste a sign-in token.", true);
    return $("user").focus();
  }
  const wanted = $("room").value.trim();
  if (!NAME_RULE.test(wanted)) {
    status("Room names are 1–64 letters A–Z (no accents or spaces), digits and _ : @ = + ~ -.", true);
    return $("room").focus();
  }
  hangUp();
  credential = token ? { token } : { user };
  me = token ? subOf(token) : user;
  room = wanted;
  attempt = 0;
  joining = true;
  // A new room: a new log.
  log.replaceChildren();
  lines.clear();
  disableSend();
  status("connecting…");
  connect();
};

$("text").oninput = () => {
  if (new TextEncoder().encode($("text").value).length <= maxTextBytes) $("send-status").textContent = "";
};

$("send").onsubmit = (e) => {
  e.preventDefault();
  const input = $("text");
  const text = input.value;
  if (!text || !ws) return;
  const bytes = new TextEncoder().encode(text).length;
  if (bytes > maxTextBytes) {
    // Kept in the field, to be shortened.
    $("send-status").textContent =
      `Too long to send: ${bytes} bytes, and this gateway takes ${maxTextBytes} at most. Shorten it and send again.`;
    input.focus();
    return;
  }
  $("send-status").textContent = "";
  const clientId = `c${++sent}`;
  // Shown to the sender at once; replaced by the room's copy, or kept as pending when held.
  const mine = line(me, text, Date.now());
  setState(mine, "pending", "sending…");
  pending.set(clientId, { line: mine, text });
  outstanding.push({ kind: "send", clientId });
  append(mine);
  ws.send(JSON.stringify({ type: "send", room, text, client_msg_id: clientId }));
  input.value = "";
};
