// Filter-as-you-type for a table: hides the rows that do not contain the text typed (any case).
(function () {
  "use strict";
  document.querySelectorAll("input[data-table]").forEach(function (input) {
    var table = document.getElementById(input.dataset.table);
    if (!table) { return; }
    input.addEventListener("input", function () {
      var needle = input.value.trim().toLowerCase();
      table.querySelectorAll("tbody tr").forEach(function (row) {
        row.hidden = needle !== "" && row.textContent.toLowerCase().indexOf(needle) < 0;
      });
    });
  });
})();
