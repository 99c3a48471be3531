"use strict";
// The chat page's connection (loaded before chat.js, which holds the chat itself): before
// opening the socket the page asks `POST /ws/check` with the same credentials, because a
// browser cannot read why a websocket upgrade was refused (it only sees close code 1006);
// a refusal is said in words and not retried; a lost connection is retried after a
// back-off the page counts down. The state it uses (`ws`, `credential`, `room`, `attempt`,
// …) and the frame handlers are chat.js's.

// The longest back-off between reconnection attempts, in ms.
const MAX_BACKOFF_MS = 30000;

// What a refusal of `/ws/check` means, for a person. `name`/`token`: which one was sent.
function refusalText(reason, sentToken) {
  switch (reason) {
    case "missing":
      return sentToken
        ? "This gateway takes a name, not a token (it runs for local development): clear the token field and type a name."
        : "This gateway needs a sign-in token, not just a name: paste your token in the token field.";
    case "invalid_user":
      return sentToken ? "Your sign-in token names a user this gateway does not accept." : nameRule();
    case "malformed": return "This is not a sign-in token this gateway can read (was it cut off when pasted?).";
    case "unknown_algorithm":
    case "bad_signature": return "This token was not issued for this gateway: its signature does not match.";
    case "expired": return "Your sign-in has expired: get a new token, then join again.";
    case "not_yet_valid": return "Your sign-in is not valid yet: check this device's clock.";
    case "wrong_audience": return "This token is for another service, not this chat.";
    case "wrong_issuer": return "This token comes from an issuer this gateway does not trust.";
    case "origin": return "The gateway does not take connections from pages at this address (its operator can allow it with --public-hosts or --allowed-origins).";
    default: return `The gateway refused the connection (${reason}).`;
  }
}

// The gateway's name rule, with a name that follows it when one is near.
function nameRule() {
  const typed = $("user").value;
  const near = typed.normalize("NFD").replace(/[\u0300-\u036f]/g, "").trim()
    .replace(/\s+/g, "_").replace(/[^A-Za-z0-9_:@=+~-]/g, "").slice(0, 64);
  const hint = near && near !== typed ? ` Try “${near}”.` : "";
  return "This gateway takes names of 1–64 letters A–Z (no accents or spaces), digits and _ : @ = + ~ -." + hint;
}

function subOf(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload)).sub;
  } catch (_) { return "?"; }
}

// Closes the current socket without a word in the log: the page chose to.
function hangUp() {
  clearTimeout(retryTimer);
  if (!ws) return;
  const old = ws;
  ws = null;
  old.onclose = old.onmessage = old.onopen = null;
  old.close(1000, "leaving");
}

// Asks the gateway whether it takes the credentials, then opens the socket; a refusal is
// shown and not retried (new credentials are needed); an unreachable gateway is retried.
async function connect() {
  const mine = ++generation;
  const headers = credential.token ? { Authorization: `Bearer ${credential.token}` } : {};
  const query = credential.token ? "" : `?user=${encodeURIComponent(credential.user)}`;
  let answer = { ok: true };
  try {
    const response = await fetch(`/ws/check${query}`, { method: "POST", headers, cache: "no-store" });
    // An older gateway without the check: the socket will tell what it can.
    if ((response.headers.get("content-type") || "").startsWith("application/json")) {
      answer = await response.json();
    }
  } catch (_) {
    if (mine === generation) retry("the gateway cannot be reached");
    return;
  }
  if (mine !== generation) return;
  if (!answer.ok) {
    status(refusalText(answer.reason, Boolean(credential.token)), true);
    system("not connected");
    return;
  }
  open();
}

function open() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const query = credential.token
    ? `access_token=${encodeURIComponent(credential.token)}`
    : `user=${encodeURIComponent(credential.user)}`;
  const socket = new WebSocket(`${scheme}://${location.host}/ws?${query}`);
  ws = socket;
  socket.onopen = () => socket.send(JSON.stringify({ type: "join", room }));
  socket.onclose = (e) => { if (socket === ws) closed(e); };
  socket.onmessage = (e) => {
    if (socket !== ws) return;
    let frame;
    try { frame = JSON.parse(e.data); } catch (_) { return; }
    onFrame(frame);
  };
}

function closed(e) {
  ws = null;
  disableSend();
  if (e.code === 1008 && e.reason === "token_expired") {
    status(refusalText("expired", true), true);
    system("disconnected: sign-in expired");
    return;
  }
  system(`disconnected (${e.code}${e.reason ? " " + e.reason : ""})`);
  retry(CLOSED[e.reason] || "connection lost");
}

// Why the gateway closed a connection (its close reasons, docs/transport.md), in words.
const CLOSED = {
  shutdown: "the gateway is restarting",
  idle_timeout: "the connection was idle too long",
  slow_client: "this page fell behind the chat",
  flood: "this page sent too much too fast",
  max_connections: "the gateway is full",
  max_connections_per_ip: "too many connections from this address",
  max_connections_per_user: "you have too many chat windows open (close one)",
};

// Tries again after a back-off that doubles from 1 s up to MAX_BACKOFF_MS, each wait drawn
// between half and all of it (so pages dropped together do not return together), counted
// down where the person can see it.
function retry(why) {
  clearTimeout(retryTimer);
  const ceiling = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** attempt);
  const wait = ceiling / 2 + Math.random() * (ceiling / 2);
  attempt += 1;
  const until = Date.now() + wait;
  const tick = () => {
    const left = Math.ceil((until - Date.now()) / 1000);
    if (left <= 0) {
      status(`${why}; reconnecting (attempt ${attempt})…`);
      connect();
      return;
    }
    status(`${why}; reconnecting in ${left} s (attempt ${attempt})…`, true);
    retryTimer = setTimeout(tick, Math.min(1000, until - Date.now()));
  };
  tick();
}
