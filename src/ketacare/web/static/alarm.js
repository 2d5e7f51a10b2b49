// Alarms that are heard (issue 14): while any alarm on this page is raised (not yet acknowledged)
// a Web Audio tone sounds, unless this screen is muted. The mute is per screen (this tab), shows
// its remaining time and ends by itself. Where the browser allows it, a notification is raised
// once per new alarm. No audio file: an oscillator. State for tests and people: window.ketacareAlarm.
(() => {
  const MUTE_KEY = "ketacare.alarmMutedUntil";
  const state = {
    playing: false, // the tone is sounding now
    raised: [], // ids of raised alarms on the page
    mutedUntil: 0, // ms since the epoch; 0 = not muted
    blocked: false, // the browser holds the sound back until someone presses a button
    notified: [], // alarm ids a notification was raised for
    starts: 0,
    stops: 0,
  };
  window.ketacareAlarm = state;
  let context = null;
  let oscillator = null;
  let gain = null;
  let pulse = null;

  const panel = () => document.getElementById("alarm-sound");
  const muteMs = () => 1000 * Number((panel() && panel().dataset.muteS) || 300);

  function readMute() {
    const until = Number(window.sessionStorage.getItem(MUTE_KEY) || 0);
    state.mutedUntil = until > Date.now() ? until : 0;
    if (!state.mutedUntil) window.sessionStorage.removeItem(MUTE_KEY);
  }

  function audio() {
    if (!context) {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      if (!Ctx) return null;
      context = new Ctx();
    }
    return context;
  }

  function startTone() {
    const ctx = audio();
    if (!ctx) { state.blocked = true; return; }
    if (ctx.state !== "running") {
      ctx.resume().then(update, () => undefined);
      if (ctx.state !== "running") { state.blocked = true; return; }
    }
    state.blocked = false;
    if (oscillator) return;
    oscillator = ctx.createOscillator();
    gain = ctx.createGain();
    oscillator.type = "square";
    oscillator.frequency.value = 880;
    gain.gain.value = 0.15;
    oscillator.connect(gain).connect(ctx.destination);
    oscillator.start();
    let on = true; // a pulsed tone: 0.4 s on, 0.4 s off
    pulse = window.setInterval(() => { on = !on; if (gain) gain.gain.value = on ? 0.15 : 0; }, 400);
    state.playing = true;
    state.starts += 1;
  }

  function stopTone() {
    if (pulse) { window.clearInterval(pulse); pulse = null; }
    if (oscillator) {
      oscillator.stop();
      oscillator.disconnect();
      oscillator = null;
      gain = null;
      state.stops += 1;
    }
    state.playing = false;
  }

  function notify(items) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    for (const el of items) {
      const id = el.dataset.alarm;
      if (state.notified.includes(id)) continue;
      state.notified.push(id);
      try {
        new Notification("KetaCare alarm", { body: el.dataset.alarmMessage || "", tag: `ketacare-alarm-${id}` });
      } catch (e) { /* a browser without page notifications: the sound and the page still alert */ }
    }
  }

  function minutesSeconds(ms) {
    const s = Math.max(0, Math.ceil(ms / 1000));
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  }

  function render() {
    const p = panel();
    if (!p) return;
    const label = document.getElementById("alarm-sound-state");
    const mute = document.getElementById("alarm-mute");
    const unmute = document.getElementById("alarm-unmute");
    const enable = document.getElementById("alarm-sound-enable");
    const allow = document.getElementById("alarm-notify");
    const muted = state.mutedUntil > Date.now();
    p.classList.toggle("muted-screen", muted);
    p.classList.toggle("sounding", state.playing);
    let text = "on";
    if (muted) text = `MUTED on this screen — ${minutesSeconds(state.mutedUntil - Date.now())} left`;
    else if (state.blocked && state.raised.length) text = "BLOCKED by the browser — press “Turn the alarm sound on”";
    else if (state.playing) text = `sounding (${state.raised.length} alarm${state.raised.length === 1 ? "" : "s"} not acknowledged)`;
    if (label && label.textContent !== text) label.textContent = text;
    if (label) label.dataset.muted = muted ? "true" : "false";
    if (mute) mute.hidden = muted;
    if (unmute) unmute.hidden = !muted;
    if (enable) enable.hidden = !state.blocked;
    if (allow) allow.hidden = !("Notification" in window) || Notification.permission !== "default";
  }

  function update() {
    readMute();
    const items = Array.from(document.querySelectorAll('[data-alarm-status="raised"]'));
    state.raised = items.map((el) => el.dataset.alarm);
    if (items.length && !state.mutedUntil) startTone();
    else stopTone();
    if (!items.length) state.blocked = false;
    notify(items);
    render();
  }

  document.addEventListener("click", (event) => {
    const target = event.target instanceof Element ? event.target.closest("button") : null;
    if (!target) { if (context && context.state !== "running") context.resume().then(update); return; }
    if (target.id === "alarm-mute") {
      window.sessionStorage.setItem(MUTE_KEY, String(Date.now() + muteMs()));
    } else if (target.id === "alarm-unmute") {
      window.sessionStorage.removeItem(MUTE_KEY);
    } else if (target.id === "alarm-sound-enable") {
      const ctx = audio();
      if (ctx) ctx.resume().then(update);
    } else if (target.id === "alarm-notify" && "Notification" in window) {
      Notification.requestPermission().then(update);
    } else if (context && context.state !== "running") {
      context.resume().then(update);
    }
    update();
  });
  document.addEventListener("htmx:afterSwap", update);
  document.addEventListener("htmx:afterSettle", update);
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", update);
  else update();
  window.setInterval(update, 1000); // the mute's countdown and its end
})();
