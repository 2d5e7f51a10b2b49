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
