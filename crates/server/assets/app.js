// Clarion dashboard: draws the overview's charts with uPlot, and reads chosen files into
// forms. Each element with a
// `data-chart` attribute names the JSON script it draws: {x: [seconds], unit, series:
// [{label, color, fill, values}]}, a null value leaving a gap.
(function () {
  "use strict";
  if (typeof uPlot === "undefined") return;
  var holders = document.querySelectorAll("[data-chart]");
  Array.prototype.forEach.call(holders, function (holder) {
    var source = document.getElementById(holder.getAttribute("data-chart"));
    if (!source) return;
    var chart = JSON.parse(source.textContent);
    function size() {
      return { width: Math.max(260, holder.clientWidth), height: 220 };
    }
    var series = [{}].concat(chart.series.map(function (s) {
      var line = { label: s.label, stroke: s.color, width: 2 };
      if (s.fill) line.fill = s.color + "1f";
      return line;
    }));
    var options = Object.assign(size(), {
      scales: { x: { time: true } },
      axes: [{}, { label: chart.unit }],
      series: series
    });
    var data = [chart.x].concat(chart.series.map(function (s) { return s.values; }));
    var plot = new uPlot(options, data, holder);
    window.addEventListener("resize", function () { plot.setSize(size()); });
  });
})();

// A file chosen in an `input[type=file][data-fills]` is read into the textarea it names, so
// the form posts the file's text. The input's field is hidden until this script shows it:
// without JavaScript, pasting the file still works.
(function () {
  "use strict";
  if (typeof FileReader === "undefined") return;
  var inputs = document.querySelectorAll("input[type=file][data-fills]");
  Array.prototype.forEach.call(inputs, function (input) {
    var target = document.getElementById(input.getAttribute("data-fills"));
    var field = input.closest(".field");
    if (!target || !field) return;
    var error = field.querySelector(".field-error");
    var max = Number(input.getAttribute("data-max-bytes")) || Infinity;
    function refuse(message) {
      error.textContent = message;
      error.hidden = false;
      input.setAttribute("aria-invalid", "true");
      input.value = "";
    }
    field.hidden = false;
    input.addEventListener("change", function () {
      var file = input.files[0];
      error.hidden = true;
      input.removeAttribute("aria-invalid");
      if (!file) return;
      if (file.size > max) {
        refuse(file.name + " is " + (file.size / 1048576).toFixed(1) + " MB; the largest file taken is " + (max / 1048576).toFixed(0) + " MB.");
        return;
      }
      var reader = new FileReader();
      reader.onload = function () { target.value = reader.result; };
      reader.onerror = function () { refuse(file.name + " could not be read."); };
      reader.readAsText(file);
    });
  });
})();
