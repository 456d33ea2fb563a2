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
