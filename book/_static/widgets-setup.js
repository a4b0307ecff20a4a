// Set-up for the Jupyter widgets HTML manager on this offline site; loaded after require.js and
// before embed-amd.js on pages with widgets.

// 1. The manager locates its fonts relative to its RequireJS module URL: point that module at the
//    copy this site serves (_static/widgets/), whatever the page's depth.
require.config({
  paths: {
    "@jupyter-widgets/html-manager/dist": document.documentElement.dataset.content_root + "_static/widgets",
  },
});

// 2. ipywidgets typesets widget labels with the MathJax 2 API (MathJax.Hub.Queue); this site runs
//    MathJax 3. Give it that one call, before MathJax loads (or if the page loads none) and after.
(function () {
  const hub = {
    Queue: function (job) {
      const element = job && job[2];
      const mathjax = window.MathJax;
      if (element && mathjax && typeof mathjax.typesetPromise === "function") {
        mathjax.typesetPromise([element]).catch(function () {});
      }
    },
  };
  const config = window.MathJax || {};
  config.Hub = hub;
  const ready = config.startup && config.startup.ready;
  config.startup = Object.assign({}, config.startup, {
    ready: function () {
      if (ready) { ready(); } else { window.MathJax.startup.defaultReady(); }
      window.MathJax.Hub = hub;
    },
  });
  window.MathJax = config;
})();
