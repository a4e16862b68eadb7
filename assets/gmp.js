// GMP web UI: the few behaviours htmx does not cover. No inline scripts anywhere (the
// Content-Security-Policy forbids them); this file is served by the GMP itself.
"use strict";
document.addEventListener("click", function (event) {
  // "Replace" reveals an empty field for a new API Secret; the stored one is never shown.
  const replace = event.target.closest("#replace-secret");
  if (!replace) return;
  const field = document.getElementById(replace.getAttribute("aria-controls"));
  if (!field) return;
  field.hidden = false;
  replace.hidden = true;
  field.focus();
});

document.addEventListener("click", function (event) {
  // "Copy" puts a value shown once (a new enrollment token) on the clipboard.
  const copy = event.target.closest("[data-copy]");
  if (!copy || !navigator.clipboard) return;
  const source = document.getElementById(copy.getAttribute("data-copy"));
  if (source) navigator.clipboard.writeText(source.textContent.trim());
});

document.addEventListener("change", function (event) {
  // Import Settings: the chosen file's text goes into the form's document field.
  const input = event.target.closest("input[type=file][data-fill]");
  if (!input || !input.files || !input.files[0]) return;
  const target = document.getElementById(input.getAttribute("data-fill"));
  input.files[0].text().then(function (text) { if (target) target.value = text; });
});

// Long ConnectWise lists (companies, boards, statuses): a filter box before each select marked
// `data-search`, hiding options whose text does not contain what was typed.
function addFilters(root) {
  root.querySelectorAll("select[data-search]").forEach(function (select) {
    if (select.previousElementSibling && select.previousElementSibling.classList.contains("option-filter")) return;
    const filter = document.createElement("input");
    filter.type = "search";
    filter.className = "option-filter";
    filter.placeholder = "Type to filter";
    filter.setAttribute("aria-label", "Filter the choices of " + (select.labels[0] ? select.labels[0].textContent.trim() : select.name));
    filter.setAttribute("aria-controls", select.id);
    filter.addEventListener("input", function () {
      const wanted = filter.value.trim().toLowerCase();
      Array.from(select.options).forEach(function (option) {
        option.hidden = option.value !== "" && wanted !== "" && !option.text.toLowerCase().includes(wanted);
      });
    });
    select.parentNode.insertBefore(filter, select);
  });
}
document.addEventListener("DOMContentLoaded", function () { addFilters(document); });
document.addEventListener("htmx:load", function (event) { addFilters(event.target); });
