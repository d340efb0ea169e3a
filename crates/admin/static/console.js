// fleetca console: progressive enhancement only; every page works without this file.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // Times: show the exact UTC time when a relative time is clicked or focused.
  document.querySelectorAll("time[title]").forEach(function (t) {
    t.tabIndex = 0;
    t.addEventListener("click", function () {
      var shown = t.getAttribute("data-relative");
      if (shown === null) {
        t.setAttribute("data-relative", t.textContent);
        t.textContent = t.title;
      } else {
        t.textContent = shown;
        t.removeAttribute("data-relative");
      }
    });
  });
  // Forms: disable the submit button after the first click (no double revocations).
  document.querySelectorAll("form[method=post]").forEach(function (f) {
    f.addEventListener("submit", function () {
      f.querySelectorAll("button[type=submit]").forEach(function (b) {
        b.disabled = true;
      });
    });
  });
});
