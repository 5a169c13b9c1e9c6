// Cached pages are the same for everyone; this fills in who is logged in.
(function () {
  "use strict";
  fetch("/me", { credentials: "same-origin", headers: { Accept: "application/json" } })
    .then(function (response) { return response.ok ? response.json() : { user: null }; })
    .then(function (me) {
      if (!me.user) { return; }
      document.querySelectorAll("[data-me='anonymous']").forEach(function (el) { el.hidden = true; });
      document.querySelectorAll("[data-me='member']").forEach(function (el) { el.hidden = false; });
      document.querySelectorAll("[data-me-name]").forEach(function (el) {
        el.textContent = me.user.name || "Account";
      });
    })
    .catch(function () { /* Offline or unavailable: the page stays as it was. */ });
})();
