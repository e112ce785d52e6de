// tfimg catalog, one image's page: filter the package table, copy a snippet. Text only, no network.
(function () {
  "use strict";
  var filter = document.querySelector(".filter");
  var input = document.getElementById("pkg-filter");
  var table = document.getElementById("packages");
  var count = document.getElementById("pkg-count");
  if (filter && input && table) {
    filter.hidden = false;
    var rows = Array.prototype.slice.call(table.tBodies[0].rows);
    input.addEventListener("input", function () {
      var q = input.value.toLowerCase().trim(), shown = 0;
      rows.forEach(function (row) {
        var hit = !q || (row.cells[0].textContent + " " + row.cells[1].textContent).toLowerCase().indexOf(q) !== -1;
        row.hidden = !hit;
        if (hit) { shown += 1; }
      });
      count.textContent = q ? shown + " of " + rows.length + " packages match" : "";
    });
  }
  Array.prototype.forEach.call(document.querySelectorAll("pre.snippet"), function (pre) {
    var button = document.createElement("button");
    button.type = "button";
    button.className = "copy";
    button.textContent = "Copy";
    var label = pre.getAttribute("aria-labelledby");
    var heading = label && document.getElementById(label);
    button.setAttribute("aria-label", "Copy " + (heading ? heading.textContent : "the command"));
    button.addEventListener("click", function () {
      var text = pre.textContent;
      var done = function () { button.textContent = "Copied"; };
      var select = function () {
        var range = document.createRange();
        range.selectNodeContents(pre);
        var sel = window.getSelection();
        sel.removeAllRanges();
        sel.addRange(range);
        button.textContent = "Selected: press Ctrl+C";
      };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(text).then(done, select);
      } else { select(); }
    });
    pre.parentNode.insertBefore(button, pre);
  });
})();
