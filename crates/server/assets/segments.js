// Clarion dashboard: a segment's members per day, with entries and exits, drawn with uPlot
// from the JSON the page carries.
(function () {
  "use strict";
  var holder = document.getElementById("history-chart");
  var source = document.getElementById("history-data");
  if (!holder || !source || typeof uPlot === "undefined") return;
  var data = JSON.parse(source.textContent);
  function size() {
    return { width: Math.max(260, holder.clientWidth), height: 220 };
  }
  var plot = new uPlot(Object.assign(size(), {
    scales: { x: { time: true } },
    axes: [{}, { label: "members" }],
    series: [
      {},
      { label: "Members", stroke: "#1f5fbf", fill: "rgba(31,95,191,0.12)", width: 2 },
      { label: "Entered", stroke: "#1a7f37", width: 1 },
      { label: "Left", stroke: "#b42318", width: 1 }
    ]
  }), [data.x, data.size, data.entered, data.exited], holder);
  window.addEventListener("resize", function () { plot.setSize(size()); });
})();
