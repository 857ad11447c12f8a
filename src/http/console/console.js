// ctxplane console: progressive enhancement only (every page works without
// it). Polls /console/state and, when the registry, a pass, the stop, the
// audit log or the vectors change, refreshes the page's live regions
// (elements with data-live) in place; forms are outside them, so nothing
// being typed is lost.
(function () {
  "use strict";
  var last = null;
  var busy = false;
  function refresh() {
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (text) {
        if (!text) { return; }
        var doc = new DOMParser().parseFromString(text, "text/html");
        document.querySelectorAll("[data-live][id]").forEach(function (el) {
          var fresh = doc.getElementById(el.id);
          if (fresh) { el.replaceWith(document.importNode(fresh, true)); }
        });
        document.body.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () {})
      .then(function () { busy = false; });
  }
  function poll() {
    if (busy || document.hidden) { return; }
    fetch("/console/state", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) {
        if (!s) { return; }
        if (last !== null && s.generation !== last) { refresh(); }
        last = s.generation;
      })
      .catch(function () {});
  }
  // Destructive buttons ask first.
  document.addEventListener("submit", function (e) {
    var b = e.target.querySelector("button.danger");
    if (b && !window.confirm(b.textContent + "?")) { e.preventDefault(); }
  });
  poll();
  window.setInterval(poll, 2000);
})();
