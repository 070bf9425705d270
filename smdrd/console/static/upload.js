// The upload job page, enhanced: its figures follow the import every second (from /api/upload/jobs/<id>)
// instead of the whole page reloading; when the import ends the page is loaded once more, with its failed lines.
// Without JavaScript the page refreshes itself (a <noscript> meta refresh), so nothing depends on this file.
(function () {
  "use strict";
  var job = document.getElementById("job");
  if (!job || job.getAttribute("data-state") !== "running") { return; }
  var url = "/api/upload/jobs/" + encodeURIComponent(job.getAttribute("data-id"));
  function set(id, text) {
    var el = document.getElementById(id);
    if (el) { el.textContent = text; }
  }
  function poll() {
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (j) {
        if (j.state !== "running") { window.location.reload(); return; }
        set("state", "importing: " + j.journalled + " lines so far (" + j.percent + "%)");
        set("calls", String(j.calls));
        set("errors", String(j.errors));
        set("percent", j.percent + "%");
        var bar = document.getElementById("progress");
        if (bar) { bar.value = j.percent; }
        window.setTimeout(poll, 1000);
      })
      .catch(function () { window.setTimeout(poll, 3000); });
  }
  window.setTimeout(poll, 1000);
}());
