// Small progressive enhancements; every page works without them.
document.addEventListener("DOMContentLoaded", () => {
  const summary = document.querySelector(".error-summary");
  if (summary) summary.focus();
  const firstInvalid = document.querySelector("[aria-invalid=true]");
  if (firstInvalid && !summary) firstInvalid.focus();
});
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
});
// Live board: say when the connection drops (htmx keeps polling and recovers by itself).
(() => {
  const status = () => document.getElementById("board-status");
  document.addEventListener("htmx:sendError", () => {
    const s = status();
    if (s) { s.textContent = "Connection lost — retrying"; s.classList.add("offline"); }
  });
  document.addEventListener("htmx:responseError", () => {
    const s = status();
    if (s) { s.textContent = "Server error — retrying"; s.classList.add("offline"); }
  });
  document.addEventListener("htmx:afterSwap", (event) => {
    const s = status();
    if (!s || !event.target || event.target.id !== "board") return;
    if (event.target.querySelector(".signed-out")) {
      s.textContent = "Signed out"; s.classList.add("offline");  // polling has stopped
    } else {
      s.textContent = "Live"; s.classList.remove("offline");
    }
  });
})();
// A refused action sent by htmx (an alarm another nurse acknowledged first): its reason is shown.
document.addEventListener("ketacare-refused", (event) => {
  const box = document.getElementById("board-refused");
  const reason = event.detail && event.detail.value;
  if (box && reason) { box.textContent = `Not done: ${reason}`; box.hidden = false; }
});
