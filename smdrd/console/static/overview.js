// The overview's live updates: the server sends the figures (its own escaped HTML fragment) over server-sent
// events whenever calls are committed; this swaps the fragment in. Without JavaScript the page still works
// (reload it). Loaded from this server only (no CDN).
(function () {
  "use strict";
  var box = document.getElementById("overview-live");
  var status = document.getElementById("overview-status");
  if (!box || !window.EventSource) { return; }
  var source = new EventSource(box.getAttribute("data-events"));
  source.addEventListener("overview", function (event) {
    var update = JSON.parse(event.data);
    box.innerHTML = update.html;
    if (status) { status.textContent = "Live: figures as of " + update.at + "."; }
  });
  source.addEventListener("error", function () {
    if (status) { status.textContent = "Live updates interrupted; reconnecting…"; }
  });
}());
