// Clarion dashboard: draws the overview's charts with uPlot. Each element with a
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
