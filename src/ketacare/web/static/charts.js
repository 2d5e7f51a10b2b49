// Renders every <div class="chart" data-figure="..."> with Plotly (served from the installed
// package at /vendor/plotly.min.js). Figures come as JSON in a data attribute because the
// Content-Security-Policy allows no inline scripts.
document.addEventListener("DOMContentLoaded", () => {
  if (!window.Plotly) return;
  for (const el of document.querySelectorAll(".chart[data-figure]")) {
    const figure = JSON.parse(el.dataset.figure);
    window.Plotly.newPlot(el, figure.data, figure.layout || {}, { responsive: true, displaylogo: false });
  }
});
