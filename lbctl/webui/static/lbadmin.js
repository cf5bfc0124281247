// The System Overview's live refresh: fetch the live part of the page (?fragment=1) every few
// seconds and put it in place. The page works without this script (reload to refresh).
// While the keyboard focus is inside the live part, the refresh waits, so that the focused
// button is not replaced under the user.
"use strict";
(function () {
  var live = document.getElementById("live");
  var state = document.getElementById("refresh-state");
  if (!live) { return; }
  var seconds = parseInt(live.getAttribute("data-refresh"), 10) || 5;
  function say(text) { if (state) { state.textContent = text; } }
  function refresh() {
    if (live.contains(document.activeElement) && document.activeElement !== document.body) {
      say("Refresh paused while a control in the overview has the focus.");
      window.setTimeout(refresh, seconds * 1000);
      return;
    }
    fetch(window.location.pathname + "?fragment=1", { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.status === 401) { say("Signed out: reload the page to sign in again."); return null; }
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (html) {
        if (html === null) { return; }
        live.innerHTML = html;
        say("Refreshed every " + seconds + " s while this page is open.");
        window.setTimeout(refresh, seconds * 1000);
      })
      .catch(function (error) {
        say("The appliance did not answer (" + error.message + "); trying again.");
        window.setTimeout(refresh, seconds * 1000);
      });
  }
  window.setTimeout(refresh, seconds * 1000);
})();
