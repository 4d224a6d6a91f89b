// The live alert board: arrivals from /board/events (server-sent events), acknowledged by POST.
"use strict";

const list = document.getElementById("alerts");
const template = document.getElementById("alert-card");
const zoneFilter = document.getElementById("zone");
const staffInput = document.getElementById("staff");
const status = document.getElementById("status");
const placeNames = {};
const mallTimezones = {};
const KINDS = { vip_arrival: "arrival", vip_at_counter: "at counter", vip_leaving: "leaving" };

staffInput.value = localStorage.getItem("staff_id") || "";
staffInput.addEventListener("change", () => localStorage.setItem("staff_id", staffInput.value.trim()));

function showOnly(zone) {
  for (const card of list.children) card.hidden = Boolean(zone) && card.dataset.zone !== zone;
  document.getElementById("empty").hidden = [...list.children].some((card) => !card.hidden);
}

zoneFilter.addEventListener("change", () => {
  const url = new URL(location.href);
  if (zoneFilter.value) url.searchParams.set("zone", zoneFilter.value); else url.searchParams.delete("zone");
  history.replaceState(null, "", url);
  showOnly(zoneFilter.value);
});

// Times as the mall's clock shows them, wherever the screen's own clock is set.
function localTime(iso, mallId) {
  return new Date(iso).toLocaleTimeString([], {
    hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false, timeZone: mallTimezones[mallId],
  });
}

function addAlert(alert) {
  if (document.getElementById("alert-" + alert.alert_id)) return;
  const card = template.content.firstElementChild.cloneNode(true);
  card.id = "alert-" + alert.alert_id;
  card.dataset.alertId = alert.alert_id;
  card.dataset.zone = alert.zone_id || "";
  card.dataset.kind = alert.kind;
  card.dataset.severity = alert.severity;
  card.dataset.ts = Date.parse(alert.ts);
  const time = card.querySelector("time");
  time.dateTime = alert.ts;
  time.textContent = localTime(alert.ts, alert.mall_id);
  card.querySelector(".kind").textContent = KINDS[alert.kind] || alert.kind;
  const tier = card.querySelector(".tier");
  tier.textContent = alert.tier || "";
  tier.dataset.tier = alert.tier || "";
  card.querySelector(".who").textContent = alert.name || alert.member_id || "";
  card.querySelector(".zone").textContent = placeNames[alert.zone_id] || alert.zone_id || "";
  const brands = alert.matching_brands.length ? alert.matching_brands : alert.top_brands;
  const likes = [...brands, ...alert.top_categories];
  card.querySelector(".likes").textContent = likes.length ? "Likes " + likes.join(", ") : "";
  card.querySelector("form").addEventListener("submit", (event) => {
    event.preventDefault();
    acknowledge(card, event.target);
  });
  // newest first; of alerts about the same moment, the one received last on top
  const older = [...list.children].find((other) => Number(other.dataset.ts) <= Number(card.dataset.ts));
  list.insertBefore(card, older || null);
  card.classList.add("fresh");
  showOnly(zoneFilter.value);
}

function markTaken(record) {
  const card = document.getElementById("alert-" + record.alert_id);
  if (!card) return;
  card.classList.add("taken");
  for (const field of card.querySelectorAll("form select, form input, form button")) field.disabled = true;
  const note = record.note_kind ? ` (${record.note_kind})` : "";
  card.querySelector(".taken").textContent = `✓ taken by ${record.staff_id} at ${localTime(record.acked_at, record.mall_id)}${note}`;
}

async function acknowledge(card, form) {
  const error = form.querySelector(".error");
  const staffId = staffInput.value.trim();
  if (!staffId) {
    error.textContent = "enter your staff id first";
    staffInput.focus();
    return;
  }
  const body = { staff_id: staffId, note_kind: form.note_kind.value || null, note: form.note.value };
  error.textContent = "";
  const response = await fetch(`/alerts/${encodeURIComponent(card.dataset.alertId)}/ack`, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const answer = await response.json();
  if (response.ok) markTaken(answer); else error.textContent = answer.error;
}

function connect() {
  const events = new EventSource("/board/events");
  events.addEventListener("open", () => { status.dataset.state = "live"; status.textContent = "live"; });
  events.addEventListener("error", () => { status.dataset.state = "down"; status.textContent = "reconnecting…"; });
  events.addEventListener("alert", (event) => addAlert(JSON.parse(event.data)));
  events.addEventListener("ack", (event) => markTaken(JSON.parse(event.data)));
}

fetch("/board/places").then((response) => response.json()).then(({ places }) => {
  for (const place of places) {
    placeNames[place.id] = place.name;
    mallTimezones[place.mall_id] = place.timezone;
    zoneFilter.add(new Option(`${place.name} (${place.id})`, place.id));
  }
  zoneFilter.value = new URL(location.href).searchParams.get("zone") || "";
  showOnly(zoneFilter.value);
  connect();
});
