// Query builder: shows the fields the chosen statistic uses and keeps the accuracy preview live.
// The page works without this script (the "Preview accuracy" button renders the same preview).
(function () {
  "use strict";
  var form = document.getElementById("query-form");
  if (!form) {
    return;
  }
  var region = document.getElementById("preview");
  var url = form.getAttribute("data-preview-url");
  var timer = null;
  var latest = 0;

  function statistic() {
    var checked = form.querySelector("input[name=statistic]:checked");
    return checked ? checked.value : "";
  }

  function showFields() {
    var chosen = statistic();
    var groups = form.querySelectorAll("[data-show-for]");
    for (var i = 0; i < groups.length; i += 1) {
      var wanted = groups[i].getAttribute("data-show-for").split(" ");
      groups[i].hidden = wanted.indexOf(chosen) < 0;
    }
  }

  function refresh() {
    var request = ++latest;
    var body = new FormData(form);
    body.set("action", "preview");
    region.setAttribute("aria-busy", "true");
    fetch(url, { method: "POST", body: body, credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        return response.json();
      })
      .then(function (answer) {
        if (request !== latest) {
          return; // a newer change is on its way
        }
        if (typeof answer.html === "string") {
          region.innerHTML = answer.html;
        }
        region.setAttribute("data-state", answer.epsilon ? "ready" : "refused");
      })
      .catch(function () {
        if (request === latest) {
          region.setAttribute("data-state", "offline");
        }
      })
      .then(function () {
        if (request === latest) {
          region.removeAttribute("aria-busy");
        }
      });
  }

  function changed(event) {
    if (event.target && event.target.name === "statistic") {
      showFields();
    }
    window.clearTimeout(timer);
    timer = window.setTimeout(refresh, 300);
  }

  form.addEventListener("input", changed);
  form.addEventListener("change", changed);
  showFields();
})();
