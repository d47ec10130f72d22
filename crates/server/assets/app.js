// Clarion dashboard: draws the overview's chart with uPlot from the JSON the page carries.
(function () {
  "use strict";
  var holder = document.getElementById("chart");
  var source = document.getElementById("chart-data");
  if (!holder || !source || typeof uPlot === "undefined") return;
  var data = JSON.parse(source.textContent);
  function size() {
    return { width: Math.max(260, holder.clientWidth), height: 240 };
  }
  var options = Object.assign(size(), {
    scales: { x: { time: true } },
    axes: [{}, { label: "messages" }],
    series: [
      {},
      { label: "Sent", stroke: "#1f5fbf", fill: "rgba(31,95,191,0.12)", width: 2 },
      { label: "Failed", stroke: "#b42318", width: 2 }
    ]
  });
  var plot = new uPlot(options, [data.days, data.sent, data.failed], holder);
  window.addEventListener("resize", function () { plot.setSize(size()); });
})();
