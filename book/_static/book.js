/* The book's script: readable search snippets.
 *
 * Sphinx's search shows a snippet of each page found, cut from the page's HTML before MathJax has
 * typeset it, so equations appear as raw TeX ("\mathbf{z}^c"). Sphinx offers no setting for this,
 * but its Search object is global: wrap Search.htmlToText so that every equation is turned into
 * plain text first ("z^c", "α ≥ 0") and display equations are left out of the snippet.
 */
(() => {
  "use strict";

  const SYMBOLS = {
    alpha: "α", beta: "β", gamma: "γ", delta: "δ", epsilon: "ε", varepsilon: "ε", zeta: "ζ",
    eta: "η", theta: "θ", kappa: "κ", lambda: "λ", mu: "μ", nu: "ν", xi: "ξ", pi: "π", rho: "ρ",
    sigma: "σ", tau: "τ", phi: "φ", varphi: "φ", chi: "χ", psi: "ψ", omega: "ω",
    Gamma: "Γ", Delta: "Δ", Theta: "Θ", Lambda: "Λ", Sigma: "Σ", Phi: "Φ", Psi: "Ψ", Omega: "Ω",
    le: "≤", leq: "≤", ge: "≥", geq: "≥", ne: "≠", neq: "≠", approx: "≈", sim: "~", mid: "|",
    Vert: "‖", lVert: "‖", rVert: "‖", lvert: "|", rvert: "|", cdot: "·", times: "×",
    odot: "⊙", infty: "∞", sum: "Σ", prod: "Π", int: "∫", partial: "∂", nabla: "∇", to: "→",
    rightarrow: "→", leftarrow: "←", in: "∈", star: "*", top: "ᵀ", ldots: "…", dots: "…",
    cdots: "…",
  };
  // Commands whose argument is shown as it is (fonts, accents, text).
  const UNWRAP = /\\(?:mathbf|boldsymbol|mathrm|mathcal|mathbb|text|textrm|operatorname|tilde|hat|bar|widetilde|widehat|underbrace|overbrace)\s*\{([^{}]*)\}/g;

  const texToText = (tex) => {
    let text = tex.replace(/^\s*(\\\(|\\\[|\$\$?)|(\\\)|\\\]|\$\$?)\s*$/g, "");
    for (let previous = null; previous !== text;) {
      previous = text;
      text = text.replace(UNWRAP, "$1");
    }
    return text
      .replace(/\\frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}/g, "($1)/($2)")
      .replace(/\\(?:left|right|big|Big|bigg|Bigg)\b/g, "")
      .replace(/\\[,;:! ]|\\quad|\\qquad/g, " ")
      .replace(/\\([A-Za-z]+)/g, (whole, name) => SYMBOLS[name] ?? name)
      .replace(/\\\|/g, "‖")
      .replace(/[{}]/g, "")
      .replace(/\s+/g, " ")
      .trim();
  };

  const readableMath = (html) => {
    const doc = new DOMParser().parseFromString(html, "text/html");
    doc.querySelectorAll("div.math").forEach((el) => el.remove());
    doc.querySelectorAll("span.math").forEach((el) => {
      el.replaceWith(doc.createTextNode(texToText(el.textContent)));
    });
    return doc.documentElement.outerHTML;
  };

  const patchSearch = () => {
    if (typeof Search === "undefined" || Search.htmlToText.vaebookPatched) return;
    const original = Search.htmlToText;
    Search.htmlToText = (htmlString, anchor) => original(readableMath(htmlString), anchor);
    Search.htmlToText.vaebookPatched = true;
  };

  patchSearch();
  document.addEventListener("DOMContentLoaded", patchSearch);
})();

/* Interactive 3-D figures (vaelib.interactive), drawn when the reader reaches them.
 *
 * The book's Sphinx extension (book/_ext/vaebook.py) moves each figure's script (its points) to
 * _static/figures/, with Plotly.newPlot(...) rewritten to window.vaebookPlot(...), and leaves in
 * the page a call to vaebookPlotLater; no page loads plotly.js (4.8 MB) in its <head>. On a slow
 * line the text shows first: plotly.js and the figure's script are fetched from the book's own
 * _static when the figure comes within a screen of view.
 *
 * On a touch screen a figure would take every swipe over it (plotly turns the scene), so a page
 * whose figure fills most of the screen could not be scrolled past it. Until the reader taps it, a
 * transparent shield lies over the figure: a swipe scrolls the page, a tap lifts the shield and
 * hands the figure its touches; once the figure leaves the screen the shield comes back.
 * plotly's toolbar stands on the right edge, clear of the title. */
(() => {
  "use strict";

  const script = document.currentScript;
  const plotlyUrl = new URL("plotly/plotly.min.js", script ? script.src : document.baseURI).href;
  const waiting = [];
  const drawn = [];  // plotly's promises, one per figure drawn
  let loading = null;

  const touchScreen = () => window.matchMedia("(pointer: coarse)").matches;

  const loadPlotly = () => {
    if (!loading) loading = loadScript(plotlyUrl);
    return loading;
  };

  const shield = (figure) => {
    if (!touchScreen() || figure.querySelector(".vaebook-touch-shield")) return;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "vaebook-touch-shield";
    button.setAttribute("aria-label", "Tap to turn and zoom the 3-D figure");
    button.innerHTML = "<span>Tap to turn it · swipe to scroll</span>";
    button.addEventListener("click", () => button.remove());
    figure.appendChild(button);
  };

  // plotly's toolbar down the right edge, clear of the title; on a narrow screen a title
  // "Subject: what to do" is set on two lines, with the room above the scene to match.
  const fitted = (layout, width) => {
    const title = layout.title || {};
    const text = typeof title === "string" ? title : title.text || "";
    const result = { ...layout, modebar: { orientation: "v" } };
    if (width < 600 && text.includes(": ")) {
      const margin = layout.margin || {};
      result.title = { ...(typeof title === "string" ? {} : title), text: text.replace(": ", ":<br>") };
      result.margin = { ...margin, t: (margin.t ?? 80) + 24 };
    }
    return result;
  };

  const draw = ({ id, data, layout, config }) => {
    const div = document.getElementById(id);
    if (!div) return;
    const wrapper = div.closest(".vaelib-plotly-3d") || div.parentElement;
    drawn.push(window.Plotly.newPlot(id, data, fitted(layout, div.clientWidth), config));
    shield(wrapper);
  };

  const loadScript = (url) => new Promise((resolve, reject) => {
    const tag = document.createElement("script");
    tag.src = url;
    tag.onload = resolve;
    tag.onerror = () => reject(new Error(`could not load ${url}`));
    document.head.appendChild(tag);
  });

  // A figure whose script (its points) lies in _static/figures (book/_ext/vaebook.py): fetched,
  // after plotly.js, once the figure nears the screen; the script then calls vaebookPlot.
  const later = [];
  const drawLater = () => Promise.all(later.splice(0).map(loadScript));

  window.vaebookPlotLater = (id, url) => {
    later.push(url);
    const div = document.getElementById(id);
    const fail = (error) => {
      if (div) div.textContent = `The 3-D figure could not be drawn: ${error.message}.`;
    };
    if (!div || !("IntersectionObserver" in window)) {
      loadPlotly().then(drawLater).catch(fail);
      return;
    }
    const observer = new IntersectionObserver((entries) => {
      if (!entries.some((entry) => entry.isIntersecting)) return;
      observer.disconnect();
      loadPlotly().then(drawLater).catch(fail);
    }, { rootMargin: "100% 0px" });
    observer.observe(div);
    // The touch shield comes back once the figure has left the screen.
    new IntersectionObserver((entries) => {
      const wrapper = div.closest(".vaelib-plotly-3d");
      if (wrapper && entries.every((entry) => !entry.isIntersecting) && window.Plotly) shield(wrapper);
    }).observe(div);
  };

  // Draw every figure now, wherever it is (the PDF's printing, tasks.py, calls this).
  window.vaebookPlotAll = () => (waiting.length || later.length
    ? loadPlotly().then(() => { waiting.splice(0).forEach(draw); return drawLater(); })
      .then(() => Promise.all(drawn))
    : Promise.all(drawn));

  // What a figure's script calls in place of Plotly.newPlot: draws it, once plotly.js is here.
  window.vaebookPlot = (id, data, layout, config) => {
    if (window.Plotly) {
      draw({ id, data, layout, config });
      return Promise.resolve();
    }
    waiting.push({ id, data, layout, config });
    return loadPlotly().then(() => waiting.splice(0).forEach(draw));
  };
})();
