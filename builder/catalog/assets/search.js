// tfimg catalog search: plain JavaScript over window.TFIMG_SEARCH (search-index.js). No network, no
// innerHTML: every value from the registry goes into the page as text.
(function () {
  "use strict";
  var data = window.TFIMG_SEARCH;
  var box = document.getElementById("search");
  var input = document.getElementById("q");
  var out = document.getElementById("results");
  if (!data || !box || !input || !out) { return; }
  box.hidden = false;
  var LIMIT = 50;

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    if (cls) { e.className = cls; }
    return e;
  }
  function lower(s) { return String(s || "").toLowerCase(); }

  // "name==1.2", "name@1.2", "name 1.2" -> [name, version]; else [query, ""]
  function split(q) {
    var m = q.match(/^([^\s=@]+)\s*(?:==|@|\s)\s*([^\s]+)$/);
    return m ? [m[1], m[2]] : [q, ""];
  }

  function why(image, q) {
    var reasons = [];
    var parts = split(q), name = parts[0], version = parts[1];
    var plain = q.replace(/^sha256:/, "");
    image.findings.forEach(function (f) {
      if (lower(f[0]).indexOf(q) === 0 && reasons.length < 6) {
        reasons.push(f[0] + " (" + f[1] + ", " + f[3] + (f[2] ? ", in " + f[2] : "") + ")");
      }
    });
    image.packages.forEach(function (p) {
      var n = lower(p[0]), v = lower(p[1]);
      var nameHit = version ? n === name : n.indexOf(name) !== -1;
      if (nameHit && (!version || v.indexOf(version) === 0) && reasons.length < 6) {
        reasons.push("package " + p[0] + " " + p[1]);
      }
    });
    image.tags.forEach(function (t) {
      if (lower(t).indexOf(q) !== -1) { reasons.push("tag " + t); }
    });
    if (lower(image.variant) === q) { reasons.push("variant " + image.variant); }
    if (plain.length >= 4 && lower(image.digest).replace(/^sha256:/, "").indexOf(plain) === 0) {
      reasons.push("digest " + image.digest);
    }
    return reasons;
  }

  function status(image) {
    var span = el("span");
    if (!image.flags.length) {
      span.appendChild(el("span", "verified, passes", "badge good"));
    }
    image.flags.forEach(function (f) {
      span.appendChild(el("span", data.flags[f] || f, "badge bad"));
      span.appendChild(document.createTextNode(" "));
    });
    return span;
  }

  function show(raw) {
    out.textContent = "";
    var q = lower(raw).trim();
    if (!q) { return; }
    var hits = [];
    data.images.forEach(function (image) {
      var reasons = why(image, q);
      if (reasons.length) { hits.push([image, reasons]); }
    });
    out.appendChild(el("p", hits.length + (hits.length === 1 ? " image matches " : " images match ") +
                       "\u201c" + raw.trim() + "\u201d" + (hits.length > LIMIT ? " (the first " + LIMIT + " shown)" : "")));
    if (!hits.length) { return; }
    var list = el("ol");
    hits.slice(0, LIMIT).forEach(function (hit) {
      var image = hit[0], li = el("li"), a = el("a", image.variant + " " + image.digest.slice(7, 19));
      a.href = image.page;
      li.appendChild(a);
      li.appendChild(document.createTextNode(" "));
      li.appendChild(status(image));
      li.appendChild(el("div", image.repository + (image.tags.length ? " \u00b7 " + image.tags.join(", ") : ""), "why"));
      li.appendChild(el("div", "matched: " + hit[1].join("; "), "why"));
      list.appendChild(li);
    });
    out.appendChild(list);
  }

  var form = document.getElementById("search-form");
  if (form) { form.addEventListener("submit", function (e) { e.preventDefault(); show(input.value); }); }
  input.addEventListener("input", function () { show(input.value); });
  document.addEventListener("keydown", function (e) {
    var t = e.target && e.target.tagName;
    if (e.key === "/" && t !== "INPUT" && t !== "TEXTAREA") { e.preventDefault(); input.focus(); }
  });
  var start = new URLSearchParams(window.location.search).get("q");
  if (start) { input.value = start; show(start); }
})();
