"use strict";
// Keeps the token for this tab only, calls the admin API with it, and refreshes the
// live part of the page in place so the token field and messages stay.
(function () {
  var KEY = "bitsgate-admin-token";
  var tokenField = document.getElementById("token");
  var message = document.getElementById("message");
  var busy = false;
  tokenField.value = sessionStorage.getItem(KEY) || "";
  tokenField.addEventListener("input", function () {
    sessionStorage.setItem(KEY, tokenField.value.trim());
  });

  function headers() {
    var token = tokenField.value.trim();
    return token ? { Authorization: "Bearer " + token } : {};
  }

  function say(text, isError) {
    message.textContent = text;
    message.className = isError ? "error" : "";
    message.hidden = false;
  }

  function refresh() {
    if (busy) return Promise.resolve();
    return fetch("/", { headers: headers(), cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(new Error("HTTP " + r.status)); })
      .then(function (html) {
        var next = new DOMParser().parseFromString(html, "text/html").getElementById("live");
        if (next) document.getElementById("live").replaceWith(next);
      })
      .catch(function (e) { say("Refresh failed: " + e.message, true); });
  }

  function call(method, path, what) {
    busy = true;
    var buttons = document.querySelectorAll("button");
    buttons.forEach(function (b) { b.disabled = true; });
    return fetch(path, { method: method, headers: headers() })
      .then(function (r) {
        return r.text().then(function (body) {
          var detail = "";
          try { detail = JSON.parse(body).error || ""; } catch (e) { detail = ""; }
          if (r.ok) say(what + ": done.", false);
          else if (r.status === 401) say(what + ": refused (401). Enter the admin token above.", true);
          else say(what + ": failed (" + r.status + ")" + (detail ? ": " + detail : "."), true);
        });
      })
      .catch(function (e) { say(what + ": " + e.message, true); })
      .then(function () {
        busy = false;
        document.querySelectorAll("button").forEach(function (b) { b.disabled = false; });
        return refresh();
      });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-action]");
    if (!button || busy) return;
    var action = button.dataset.action;
    var id = button.dataset.backend;
    if (action === "reload") {
      call("POST", "/config/reload", "Reload");
    } else if (action === "drain" || action === "undrain") {
      call("POST", "/backends/" + encodeURIComponent(id) + "/" + action,
        (action === "drain" ? "Drain " : "Undrain ") + id);
    }
  });

  var seconds = parseInt(document.body.dataset.refresh, 10) || 5;
  setInterval(refresh, seconds * 1000);
})();
