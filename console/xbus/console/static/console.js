// The console's only script of its own: the countdowns of deadlines and grants tick without
// a reload. Everything else is HTML and htmx.
(function () {
  "use strict";
  function render(el) {
    var until = Date.parse(el.dataset.until);
    if (isNaN(until)) return;
    var seconds = Math.round((until - Date.now()) / 1000);
    var overdue = seconds < 0;
    seconds = Math.abs(seconds);
    var d = Math.floor(seconds / 86400), h = Math.floor(seconds % 86400 / 3600), m = Math.floor(seconds % 3600 / 60);
    var text = (d ? d + " " + el.dataset.d + " " : "") + h + " " + el.dataset.h + " " + m + " " + el.dataset.m;
    el.textContent = (overdue ? el.dataset.overdue : el.dataset.left).replace("{time}", text);
    el.classList.toggle("overdue", overdue);
  }
  function tick() { document.querySelectorAll(".countdown[data-until]").forEach(render); }
  document.addEventListener("DOMContentLoaded", function () { tick(); setInterval(tick, 30000); });
})();
