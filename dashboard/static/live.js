// The Now page: fetch the live figures (rendered by the server) every refresh-ms and swap them in.
(function () {
  "use strict";
  var box = document.getElementById("live");
  if (!box) { return; }
  var every = Number(box.dataset.refreshMs) || 1000;
  function refresh() {
    fetch(box.dataset.src, {cache: "no-store"})
      .then(function (answer) { return answer.ok ? answer.text() : Promise.reject(answer.status); })
      .then(function (html) { box.innerHTML = html; box.classList.remove("stale"); })
      .catch(function () { box.classList.add("stale"); })  // the service stopped: keep the last figures, greyed
      .finally(function () { setTimeout(refresh, every); });
  }
  setTimeout(refresh, every);
})();
